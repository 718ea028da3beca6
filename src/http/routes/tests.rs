use super::*;

fn demand(method: Method, path: &str) -> Demand {
    let routes = routes();
    let pattern = routes
        .resources
        .iter()
        .find(|resource| resource.def.is_match(path))
        .and_then(|resource| resource.def.pattern());
    routes.demand(&method, pattern, &path.parse().expect("a valid URI"))
}

fn read(channel: &str) -> Demand {
    Demand::Read(channel.to_owned())
}

fn write(channel: &str) -> Demand {
    Demand::Write(channel.to_owned())
}

#[test]
fn every_annotation_documents_the_route_it_is_declared_for() {
    for route in routes().routes() {
        let (operations, _) = route.documented();
        assert_eq!(operations.len(), route.documented_paths().len());
        for (path, operation) in operations {
            assert!(operation.operation_id.is_some(), "{path}");
        }
    }
}

#[test]
fn channels_come_from_the_routed_path_parameters() {
    use Method as M;
    assert_eq!(demand(M::GET, "/api/tracks"), read("tracks"));
    assert_eq!(demand(M::PATCH, "/api/spikes/s1"), write("spikes"));
    assert_eq!(
        demand(M::DELETE, "/api/features/f1/links/f2"),
        write("features")
    );
    assert_eq!(
        demand(M::POST, "/api/broadcast/tracks/t1/status"),
        write("tracks")
    );
    assert_eq!(
        demand(M::POST, "/api/channels/team-a/events"),
        write("team-a")
    );
    assert_eq!(
        demand(M::GET, "/api/conversations/c1/messages"),
        read("conversation:c1")
    );
    assert_eq!(
        demand(M::POST, "/api/conversations/c1/messages/m1/delta"),
        write("conversation:c1")
    );
    assert_eq!(
        demand(M::GET, "/api/conversations/sync"),
        read("conversations")
    );
    assert_eq!(
        demand(M::DELETE, "/api/conversations/c1"),
        write("conversations")
    );
    assert_eq!(demand(M::POST, "/api/files/delete"), write("files"));
    assert_eq!(demand(M::GET, "/api/files/a/versions/2"), read("files"));
    assert_eq!(demand(M::GET, "/api/sessions"), read("presence"));
}

#[test]
fn public_narrowing_and_unknown_routes_demand_nothing_or_a_token() {
    use Method as M;
    for path in ["/", "/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(demand(M::GET, path), Demand::Nothing, "{path}");
        assert_eq!(demand(M::POST, path), Demand::Nothing, "{path}: 405");
    }
    for (method, path) in [
        (M::GET, "/metrics"),
        (M::GET, "/api/stats"),
        (M::GET, "/api/events"),
        (M::GET, "/api/events/7"),
        (M::POST, "/api/events/batch"),
        (M::GET, "/api/sync"),
        (M::POST, "/api/stream-tickets"),
        // A method the path lacks: 405 to any token.
        (M::PUT, "/api/features"),
        (M::HEAD, "/api/files"),
        // No route: 404 to any token.
        (M::GET, "/api/unknown"),
        (M::GET, "/api/widgets/1"),
    ] {
        assert_eq!(
            demand(method.clone(), path),
            Demand::Token,
            "{method} {path}"
        );
    }
    assert_eq!(
        demand(M::GET, "/api/stream"),
        Demand::Stream,
        "a ticket opens it"
    );
}

#[test]
fn a_path_the_table_does_not_declare_is_refused() {
    let uri: Uri = "/api/extra".parse().unwrap();
    assert_eq!(
        routes().demand(&Method::GET, Some("/api/extra"), &uri),
        Demand::Refused
    );
}

#[test]
fn allow_names_the_declared_methods_in_order() {
    let allow = |path: &str| {
        let at = routes().by_pattern[&pattern(path)];
        routes().resources[at].allow.clone()
    };
    assert_eq!(allow("/api/files/{id}"), "GET, PUT, DELETE");
    assert_eq!(allow("/api/{collection}/{id}"), "GET, PATCH, DELETE");
    assert_eq!(allow("/api/files/{id}/lock"), "POST, DELETE");
    assert_eq!(allow("/api/stream"), "GET");
}

#[test]
fn a_need_may_name_only_parameters_its_path_has() {
    assert!(has_param("/api/{collection}/{id}", "collection"));
    assert!(has_param("/api/conversations/{id}/messages", "id"));
    assert!(!has_param("/api/conversations/{id}/messages", "i"));
    assert!(!has_param("/api/files", "id"));
    assert!(declares("/api/files", Need::Read(Channel::Named("files"))));
    assert!(!declares(
        "/api/files",
        Need::Write(Channel::Conversation("id"))
    ));
}

#[test]
fn every_route_a_stream_ticket_opens_is_served_as_a_stream() {
    for route in routes().routes() {
        if route.need == Need::Stream {
            assert_eq!(route.opens, Opens::Stream, "{}", route.path);
        }
    }
    assert_eq!(routes().stream_routes().count(), 3);
}

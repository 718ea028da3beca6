use super::*;
use serde_json::value::RawValue;

/// An event `note` on `global` with id `id` and payload `{}`.
pub(super) fn event(id: &str) -> Event {
    Event {
        id: EventId::parse("id", id).unwrap(),
        channel: "global".into(),
        event_type: "note".into(),
        resource_type: None,
        resource_id: None,
        agent_id: "a".into(),
        session_id: None,
        timestamp: Timestamp::parse("t", "2026-11-21T12:00:00.000000Z").unwrap(),
        payload: RawValue::from_string("{}".into()).unwrap(),
    }
}

#[test]
fn an_internal_registration_gets_events_but_is_not_counted_as_a_stream() {
    let hub = Hub::new(EventId::ZERO, 16);
    let client = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let internal = hub.subscribe_internal(StreamFilter::all());
    assert_eq!(hub.stream_count(), 1);
    assert_eq!(hub.streams_per_pattern(), vec![("*".to_owned(), 1)]);
    hub.publish(&[&event("1")]);
    assert!(internal.queue.try_recv().is_some());
    hub.unsubscribe(client.id);
    assert_eq!(hub.stream_count(), 0);
    assert!(hub.streams_per_pattern().is_empty());
    hub.unsubscribe(internal.id);
    assert_eq!(hub.stream_count(), 0);
}

#[test]
fn the_maps_give_their_room_back_once_streams_closed() {
    let hub = Hub::new(EventId::ZERO, 16);
    let ids: Vec<_> = (0..2000)
        .map(|_| {
            hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now())
                .id
        })
        .collect();
    let grown = hub.lock().subscribers.capacity();
    assert!(grown >= 2000);
    for id in ids {
        hub.unsubscribe(id);
    }
    assert!(
        hub.lock().subscribers.capacity() >= 2000,
        "a HashMap keeps its room"
    );
    hub.shrink_to_fit();
    assert!(hub.lock().subscribers.capacity() < 16);
    // Still works afterwards.
    let again = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    assert_eq!(hub.publish(&[&event("1")]), vec![1]);
    assert!(again.queue.try_recv().is_some());
}

#[test]
fn a_writer_learns_the_deliveries_of_events_the_follower_published_first() {
    let hub = Hub::new(EventId::ZERO, 16);
    let _a = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let _b = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let (one, two) = (event("1"), event("2"));
    // The follower read the commit from the log before the writer
    // published it.
    assert_eq!(hub.publish(&[&one, &two]), vec![2, 2]);
    assert_eq!(
        hub.publish_after(EventId::ZERO, &[&one, &two]),
        Some(vec![2, 2])
    );
    // Events the hub has not seen yet, after another node's: not published.
    let three = event("3");
    assert_eq!(hub.publish_after(EventId::ZERO, &[&three]), None);
    assert_eq!(
        hub.publish_after(EventId::parse("id", "2").unwrap(), &[&three]),
        Some(vec![2])
    );
}

#[test]
fn shutting_down_closes_client_streams_even_those_opened_after() {
    let hub = Hub::new(EventId::ZERO, 16);
    let before = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let internal = hub.subscribe_internal(StreamFilter::all());
    assert!(!before.queue.is_closed());
    hub.shut_down();
    assert!(before.queue.is_closed());
    // The server's own tasks end through their shutdown signal instead.
    assert!(!internal.queue.is_closed());
    let after = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    assert!(after.queue.is_closed());
}

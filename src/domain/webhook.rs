//! Which webhook targets the server may call: the rule both kinds of
//! subscription (Durable Streams' and the channels') share, checked when a
//! subscription is made (the URL) and again when a host name resolves (each
//! address), so a name that points into a private network is refused too.
//! Plain Rust: no HTTP, no database.

use std::net::IpAddr;

/// What the operator allowed beyond public addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `--webhooks-allow-loopback`: `127.0.0.0/8`, `::1`, `localhost`.
    pub allow_loopback: bool,
    /// `--webhooks-allow-private`: private, shared, link-local and ULA
    /// ranges (an internal network's CI or workers).
    pub allow_private: bool,
    /// `--webhooks-allow-host`: when any is given, only these hosts are
    /// called (`ci.example.com`, `*.example.com`, `127.0.0.1`).
    pub hosts: Vec<String>,
}

const LOOPBACK: &str = "webhook.url must not target a loopback host on this server";
const PRIVATE: &str = "webhook.url must not target a private or link-local address";
const NEVER: &str = "webhook.url must not target an unspecified, multicast or reserved address";
const NOT_LISTED: &str = "webhook.url must name a host the server allows (--webhooks-allow-host)";

impl WebhookPolicy {
    /// Whether `host` (a name or an address, lower case) is one the
    /// operator listed; every host is when none is.
    pub fn lists_host(&self, host: &str) -> bool {
        self.hosts.is_empty()
            || self
                .hosts
                .iter()
                .any(|allowed| match allowed.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|rest| rest.ends_with('.')),
                    None => allowed.eq_ignore_ascii_case(host),
                })
    }

    /// Why the server may not connect to `address`, or `None` when it may.
    pub fn refuse_address(&self, address: IpAddr) -> Option<&'static str> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if address.is_loopback() {
            return (!self.allow_loopback).then_some(LOOPBACK);
        }
        let (never, private) = match address {
            IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                (
                    v4.is_unspecified()
                        || v4.is_broadcast()
                        || v4.is_multicast()
                        || v4.is_documentation()
                        || a == 0
                        || a >= 240,
                    v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b)),
                )
            }
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                (
                    v6.is_unspecified() || v6.is_multicast(),
                    (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80,
                )
            }
        };
        if never {
            return Some(NEVER);
        }
        (private && !self.allow_private).then_some(PRIVATE)
    }

    /// Why a webhook URL is refused (a whole sentence naming `webhook.url`),
    /// or `None` when it may be called: anything but `http`/`https` with a
    /// host, and a host that is an address (or `localhost`) this policy
    /// refuses. Other names are checked again when they resolve.
    pub fn refuse_url(&self, url: &str) -> Option<&'static str> {
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Some("webhook.url must be a valid URL");
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return Some("webhook.url must use http or https");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Some("webhook.url must not hold credentials");
        }
        let Some(host) = parsed.host_str() else {
            return Some("webhook.url must name a host");
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if !self.lists_host(&bare.to_ascii_lowercase()) {
            return Some(NOT_LISTED);
        }
        match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(address) => self.refuse_address(address),
            Err(_) => {
                let name = host.to_ascii_lowercase();
                let loopback = name == "localhost" || name.ends_with(".localhost");
                (loopback && !self.allow_loopback).then_some(LOOPBACK)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: WebhookPolicy = WebhookPolicy {
        allow_loopback: false,
        allow_private: false,
        hosts: Vec::new(),
    };

    #[test]
    fn private_ranges_are_refused_unless_allowed() {
        for url in [
            "http://10.0.0.1/hook",
            "http://192.168.1.1/hook",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://169.254.169.254/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            assert_eq!(STRICT.refuse_url(url), Some(PRIVATE), "{url}");
            let open = WebhookPolicy {
                allow_private: true,
                ..STRICT
            };
            assert_eq!(open.refuse_url(url), None, "{url}");
        }
    }

    #[test]
    fn loopback_needs_its_own_flag_and_some_addresses_never_pass() {
        let private = WebhookPolicy {
            allow_private: true,
            ..STRICT
        };
        assert_eq!(private.refuse_url("http://127.0.0.1:9/"), Some(LOOPBACK));
        assert_eq!(private.refuse_url("http://localhost/"), Some(LOOPBACK));
        assert_eq!(private.refuse_url("http://[::1]/"), Some(LOOPBACK));
        let everything = WebhookPolicy {
            allow_loopback: true,
            allow_private: true,
            hosts: Vec::new(),
        };
        assert_eq!(everything.refuse_url("http://127.0.0.1:9/"), None);
        assert_eq!(everything.refuse_url("http://0.0.0.0/"), Some(NEVER));
        assert_eq!(everything.refuse_url("http://224.0.0.1/"), Some(NEVER));
        assert!(everything.refuse_url("ftp://example.com/").is_some());
        assert!(everything.refuse_url("http://u:p@example.com/").is_some());
        assert_eq!(STRICT.refuse_url("https://example.com/hook"), None);
    }

    #[test]
    fn a_host_list_lets_only_its_hosts_through() {
        let listed = WebhookPolicy {
            allow_loopback: true,
            hosts: vec!["127.0.0.1".into(), "*.example.com".into()],
            ..STRICT
        };
        assert_eq!(listed.refuse_url("http://127.0.0.1:9/hook"), None);
        assert_eq!(listed.refuse_url("https://ci.example.com/hook"), None);
        assert_eq!(
            listed.refuse_url("https://example.com/hook"),
            Some(NOT_LISTED)
        );
        assert_eq!(
            listed.refuse_url("https://evilexample.com/"),
            Some(NOT_LISTED)
        );
        assert_eq!(listed.refuse_url("http://localhost/"), Some(NOT_LISTED));
    }
}

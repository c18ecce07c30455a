//! Which push endpoints Belfry may send to: a user chooses the URL, so without these checks a
//! subscription is a way to make the server POST to its own network (SSRF).
//!
//! An endpoint must be `https` (plain `http` only with `allow_insecure_endpoints`), on a host
//! of `allowed_hosts` when that list is set, and must not lead to a loopback, private,
//! link-local, unspecified, multicast or otherwise non-public address. Literal addresses are
//! checked here, at subscribe time and again before each send; names are checked after DNS
//! resolution by [`PublicResolver`], the HTTP client's only resolver, so the address checked is
//! the address connected to. The client follows no redirects and uses no proxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// A host of `push.allowed_hosts`: `fcm.googleapis.com` (that host only) or `*.push.apple.com`
/// (any name below it, not the name itself). Lower case; compared without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    /// The host, or the suffix after `*.`.
    name: String,
    /// Whether it is `*.name`.
    subdomains: bool,
}

impl HostPattern {
    /// Whether `host` (a name or an address as the URL gives it, without brackets) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if self.subdomains {
            host.strip_suffix(self.name.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
        } else {
            host == self.name
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (name, subdomains) = match lower.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), true),
            None => (lower, false),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && ((name.parse::<IpAddr>().is_ok() && !subdomains) || is_domain_name(&name));
        if valid {
            Ok(Self { name, subdomains })
        } else {
            Err(format!(
                "push.allowed_hosts: `{text}` is not a host name, `*.` and a host name, or an IP address"
            ))
        }
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

/// LDH labels of 1–63 characters (RFC 1123), as the URL parser leaves a name: lower case,
/// punycode for international names. A numeric last label would make it an IPv4 address.
fn is_domain_name(name: &str) -> bool {
    let numeric_tld = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    !numeric_tld
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Why an endpoint is not sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.as_str())]
pub enum EndpointRefused {
    /// Not a URL, longer than 2048 bytes, or holding control characters or spaces.
    NotUrl,
    /// Not `https` (or `http` where insecure endpoints are allowed).
    Scheme,
    /// No host, a malformed host, or user info (`user:password@`).
    Host,
    /// Not one of `push.allowed_hosts`.
    NotAllowed,
    /// A loopback, private, link-local, unspecified, multicast or reserved address, given
    /// literally or resolved from the name.
    NonPublic,
}

impl EndpointRefused {
    /// What a client is told, as `field: problem`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointRefused::NotUrl => "endpoint: not a URL of at most 2048 bytes",
            EndpointRefused::Scheme => "endpoint: must be an https URL",
            EndpointRefused::Host => "endpoint: must name a host, without user info",
            EndpointRefused::NotAllowed => "endpoint: not a push service this server delivers to",
            EndpointRefused::NonPublic => "endpoint: must be a public address",
        }
    }
}

/// What an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A global unicast address.
    Public,
    /// This machine (127.0.0.0/8, `::1`, and their IPv4-mapped forms).
    Loopback,
    /// Anything else: private, shared, link-local, unique local, unspecified, multicast,
    /// broadcast, documentation, benchmarking, reserved.
    Internal,
}

/// Classifies `ip`; IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged
/// by that address.
pub fn reach(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => reach_v4(v4),
        IpAddr::V6(v6) => reach_v6(v6),
    }
}

fn reach_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return Reach::Loopback;
    }
    let internal = a == 0                                   // this network, 0.0.0.0/8
        || ip.is_private()                                  // 10/8, 172.16/12, 192.168/16
        || (a == 100 && (64..128).contains(&b))             // shared (CGN), 100.64/10
        || ip.is_link_local()                               // 169.254/16
        || (a == 192 && b == 0 && c == 0)                   // IETF assignments, 192.0.0/24
        || ip.is_documentation()                            // 192.0.2, 198.51.100, 203.0.113
        || (a == 192 && b == 88 && c == 99)                 // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19))               // benchmarking, 198.18/15
        || ip.is_multicast()                                // 224/4
        || a >= 240; // reserved 240/4 and broadcast
    if internal {
        Reach::Internal
    } else {
        Reach::Public
    }
}

fn reach_v6(ip: Ipv6Addr) -> Reach {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return reach_v4(v4);
    }
    if ip.is_loopback() {
        return Reach::Loopback;
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return reach_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return match reach_v4(embedded(s[1], s[2])) {
            Reach::Public => Reach::Public,
            _ => Reach::Internal,
        };
    }
    // Only 2000::/3 is global unicast; within it, these are not reachable or not ours to
    // reach: IETF protocol assignments and Teredo (2001::/23), documentation (2001:db8::/32,
    // 3fff::/20).
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    let excluded =
        (s[0] == 0x2001 && (s[1] < 0x0200 || s[1] == 0x0db8)) || (s[0] == 0x3fff && s[1] < 0x1000);
    if global_unicast && !excluded {
        Reach::Public
    } else {
        Reach::Internal
    }
}

/// The endpoint rules of one server (from `[push]`).
#[derive(Debug, Clone)]
pub struct EndpointPolicy {
    allow_insecure: bool,
    allowed_hosts: Vec<HostPattern>,
}

impl EndpointPolicy {
    /// `allow_insecure` admits `http` and loopback addresses (development and tests only);
    /// an empty `allowed_hosts` admits any public host.
    pub fn new(allow_insecure: bool, allowed_hosts: Vec<HostPattern>) -> Self {
        Self {
            allow_insecure,
            allowed_hosts,
        }
    }

    /// Whether an address may be connected to.
    pub fn admits(&self, ip: IpAddr) -> bool {
        match reach(ip) {
            Reach::Public => true,
            Reach::Loopback => self.allow_insecure,
            Reach::Internal => false,
        }
    }

    /// Checks an endpoint's URL, parsed as the HTTP client will parse it (so `https://2130706433/`
    /// is `127.0.0.1` here too). A name is not resolved here: [`PublicResolver`] checks what it
    /// resolves to when connecting.
    pub fn check(&self, endpoint: &str) -> Result<reqwest::Url, EndpointRefused> {
        // The URL parser would quietly drop or escape these; a real endpoint has none.
        if endpoint.len() > 2048
            || endpoint
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(EndpointRefused::NotUrl);
        }
        let url = reqwest::Url::parse(endpoint).map_err(|_| EndpointRefused::NotUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err(EndpointRefused::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EndpointRefused::Host);
        }
        // The parser normalises the host: IPv4 in dotted decimal, IPv6 in brackets, names in
        // lower case and punycode.
        let host = url.host_str().ok_or(EndpointRefused::Host)?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() && !is_domain_name(host.trim_end_matches('.')) {
            return Err(EndpointRefused::Host);
        }
        if !self.allowed_hosts.is_empty() && !self.allowed_hosts.iter().any(|p| p.matches(host)) {
            return Err(EndpointRefused::NotAllowed);
        }
        if ip.is_some_and(|ip| !self.admits(ip)) {
            return Err(EndpointRefused::NonPublic);
        }
        Ok(url)
    }

    /// The resolver for the push HTTP client.
    pub fn resolver(&self) -> PublicResolver {
        PublicResolver {
            allow_loopback: self.allow_insecure,
        }
    }
}

/// A resolution that led to an address the policy refuses; found in a failed request's error
/// chain, so that the send is not retried.
#[derive(Debug, thiserror::Error)]
#[error("push endpoint resolves to a non-public address")]
pub struct RefusedAddress;

/// The system resolver, refusing a name if any of its addresses is not public (or loopback,
/// where allowed). The client connects only to the addresses it returns.
#[derive(Debug, Clone)]
pub struct PublicResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted = |a: &SocketAddr| match reach(a.ip()) {
                Reach::Public => true,
                Reach::Loopback => allow_loopback,
                Reach::Internal => false,
            };
            if addrs.is_empty() || !addrs.iter().all(admitted) {
                return Err(Box::new(RefusedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_global_unicast_addresses_are_public() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2607:f8b0:4004:800::200e",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3fff:1000::1",
            "3ffe::1",
        ] {
            assert_eq!(reach(ip(public)), Reach::Public, "{public}");
        }
        for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(reach(ip(loopback)), Reach::Loopback, "{loopback}");
        }
        for internal in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::10.0.0.1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "3fff::1",
            "3fff:fff::1",
            "100::1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
        ] {
            assert_ne!(reach(ip(internal)), Reach::Public, "{internal}");
        }
    }

    #[test]
    fn host_patterns_match_a_host_or_the_names_below_a_suffix() {
        let exact = HostPattern::try_from("FCM.googleapis.com".to_owned()).unwrap();
        assert!(exact.matches("fcm.googleapis.com"));
        assert!(exact.matches("fcm.googleapis.com."));
        assert!(!exact.matches("x.fcm.googleapis.com"));
        let suffix = HostPattern::try_from("*.push.apple.com".to_owned()).unwrap();
        assert!(suffix.matches("web.push.apple.com"));
        assert!(suffix.matches("a.b.push.apple.com"));
        assert!(!suffix.matches("push.apple.com"));
        assert!(!suffix.matches("evilpush.apple.com"));
        assert!(!suffix.matches("push.apple.com.evil.example"));
        for bad in [
            "",
            "*.",
            "*",
            "a..b",
            "-a.b",
            "*.1.2.3.4",
            "a b",
            "https://x",
        ] {
            assert!(HostPattern::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        assert_eq!(suffix.to_string(), "*.push.apple.com");
    }

    #[test]
    fn endpoints_must_be_https_urls_of_public_or_allowed_hosts() {
        let strict = EndpointPolicy::new(false, Vec::new());
        assert!(
            strict
                .check("https://fcm.googleapis.com/fcm/send/abc")
                .is_ok()
        );
        assert!(strict.check("https://8.8.8.8:8443/x").is_ok());
        for (endpoint, refused) in [
            ("not a url", EndpointRefused::NotUrl),
            ("https://push.example/a\u{0}b", EndpointRefused::NotUrl),
            (" https://push.example/", EndpointRefused::NotUrl),
            ("http://push.example/x", EndpointRefused::Scheme),
            ("ftp://push.example/x", EndpointRefused::Scheme),
            ("https://user:pw@push.example/x", EndpointRefused::Host),
            ("https://a_b.example/x", EndpointRefused::Host),
            ("https://127.0.0.1:9/internal", EndpointRefused::NonPublic),
            ("https://2130706433/x", EndpointRefused::NonPublic),
            ("https://0x7f.1/x", EndpointRefused::NonPublic),
            ("https://[::1]/x", EndpointRefused::NonPublic),
            ("https://[::ffff:127.0.0.1]/x", EndpointRefused::NonPublic),
            ("https://[::ffff:a00:1]/x", EndpointRefused::NonPublic),
            ("https://10.1.2.3/x", EndpointRefused::NonPublic),
            ("https://169.254.169.254/latest", EndpointRefused::NonPublic),
            ("https://[fe80::1]/x", EndpointRefused::NonPublic),
            ("https://[fd00::1]/x", EndpointRefused::NonPublic),
            ("https://0.0.0.0/x", EndpointRefused::NonPublic),
            ("https://[ff02::1]/x", EndpointRefused::NonPublic),
        ] {
            assert_eq!(strict.check(endpoint), Err(refused), "{endpoint}");
        }
        let long = format!("https://push.example/{}", "a".repeat(2048));
        assert_eq!(strict.check(&long), Err(EndpointRefused::NotUrl));

        let dev = EndpointPolicy::new(true, Vec::new());
        assert!(dev.check("http://127.0.0.1:9/push/x").is_ok());
        assert!(dev.check("http://[::1]:9/push/x").is_ok());
        assert_eq!(
            dev.check("http://10.0.0.1/x"),
            Err(EndpointRefused::NonPublic)
        );

        let listed = EndpointPolicy::new(
            false,
            vec![HostPattern::try_from("*.googleapis.com".to_owned()).unwrap()],
        );
        assert!(listed.check("https://fcm.googleapis.com/x").is_ok());
        assert!(listed.check("https://FCM.GoogleApis.com./x").is_ok());
        assert_eq!(
            listed.check("https://push.example/x"),
            Err(EndpointRefused::NotAllowed)
        );
        assert_eq!(
            listed.check("https://googleapis.com.evil.example/x"),
            Err(EndpointRefused::NotAllowed)
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_loopback_addresses_unless_allowed() {
        use reqwest::dns::Resolve;
        let name = |n: &str| n.parse::<reqwest::dns::Name>().unwrap();
        let strict = EndpointPolicy::new(false, Vec::new()).resolver();
        let refused = strict.resolve(name("localhost")).await.err().unwrap();
        assert!(refused.is::<RefusedAddress>(), "{refused}");
        let dev = EndpointPolicy::new(true, Vec::new()).resolver();
        let addrs: Vec<SocketAddr> = dev.resolve(name("localhost")).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}

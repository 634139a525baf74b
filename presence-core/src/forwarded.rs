//! Who the client of a request is when it came through proxies: the TCP peer,
//! unless that peer is a proxy we trust, in which case the address the
//! proxies recorded in `X-Forwarded-For` or RFC 7239 `Forwarded`.
//!
//! Each proxy appends the address it received the request from, so only the
//! right end of the list was written by proxies; anything to its left may
//! have been made up by the client. The client is therefore the right-most
//! address that is not itself a trusted proxy (or the left-most, when every
//! one is trusted). A header that cannot be read, or a peer we do not trust,
//! gives the peer's own address: a forged header changes nothing.
//!
//! Which header to read is a setting, not a guess: a proxy appends to the one
//! it writes and passes the other through untouched, so the other is entirely
//! the client's to forge.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// Beyond this many hops a header is taken as malformed (and the peer is the
/// client): no real chain of proxies is that long, and the work per request
/// stays bounded.
const MAX_HOPS: usize = 64;

/// The networks of the proxies whose forwarding headers are believed
/// (`PRESENCE_TRUSTED_PROXIES`): comma-separated CIDR ranges or single
/// addresses; empty trusts nobody.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let networks = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<IpNet>()
                    .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                    .map(|network| network.trunc())
                    .map_err(|_| {
                        format!(
                            "{part:?} is neither an address nor a CIDR range \
                             (such as 10.0.0.0/8, 127.0.0.1/32 or fd00::/8)"
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }
}

impl std::fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let networks: Vec<String> = self.networks.iter().map(IpNet::to_string).collect();
        f.write_str(&networks.join(","))
    }
}

/// The header the trusted proxies write the client's address in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (ingress-nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, in lower case as HTTP/2 writes it.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl TrustedProxies {
    /// Whether no proxy is trusted (the peer is always the client).
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether a range covers every address: then any client could claim any
    /// address, which production refuses.
    pub fn trusts_everyone(&self) -> bool {
        self.networks
            .iter()
            .any(|network| network.prefix_len() == 0)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The client of a request that came from `peer` and carried `values`
    /// (every line of `header`, in order).
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        header: ForwardedHeader,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        for value in values {
            let read = match header {
                ForwardedHeader::XForwardedFor => read_x_forwarded_for(value, &mut hops),
                ForwardedHeader::Forwarded => read_forwarded(value, &mut hops),
            };
            if read.is_none() || hops.len() > MAX_HOPS {
                return peer;
            }
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            match *hop {
                Hop::Address(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        return ip;
                    }
                }
                // A hidden node: the last address known is the proxy that
                // received the request from it.
                Hop::Unknown => return client,
            }
        }
        client
    }
}

/// One entry of a forwarding header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    Address(IpAddr),
    /// `unknown`, an obfuscated identifier (`_hidden`), or no `for` at all.
    Unknown,
}

/// Reads one `X-Forwarded-For` line (`addr, addr, ...`, each possibly with a
/// port) into `hops`; `None` when an entry is not an address.
fn read_x_forwarded_for(value: &[u8], hops: &mut Vec<Hop>) -> Option<()> {
    let value = std::str::from_utf8(value).ok()?;
    for entry in value.split(',') {
        hops.push(Hop::Address(address(entry.trim())?));
        if hops.len() > MAX_HOPS {
            return None;
        }
    }
    Some(())
}

/// An address, bare or with a port (`192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`).
fn address(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

/// Reads one `Forwarded` line (RFC 7239: elements separated by commas, each
/// `name=value` pairs separated by semicolons, values tokens or quoted
/// strings) into `hops`; `None` when it does not follow the grammar.
fn read_forwarded(value: &[u8], hops: &mut Vec<Hop>) -> Option<()> {
    let value = std::str::from_utf8(value).ok()?;
    let mut rest = value;
    loop {
        let (hop, after) = forwarded_element(rest)?;
        hops.push(hop);
        if hops.len() > MAX_HOPS {
            return None;
        }
        let after = after.trim_start_matches([' ', '\t']);
        if after.is_empty() {
            return Some(());
        }
        rest = after.strip_prefix(',')?;
    }
}

/// One element, up to (not including) the comma that ends it.
fn forwarded_element(mut text: &str) -> Option<(Hop, &str)> {
    let mut node = None;
    loop {
        text = text.trim_start_matches([' ', '\t']);
        if text.is_empty() || text.starts_with(',') {
            return Some((node.unwrap_or(Hop::Unknown), text));
        }
        let equals = text.find('=')?;
        let name = &text[..equals];
        if !is_token(name) {
            return None;
        }
        let (value, after) = pair_value(&text[equals + 1..])?;
        if name.eq_ignore_ascii_case("for") {
            if node.is_some() {
                return None;
            }
            node = Some(forwarded_node(&value)?);
        }
        text = after.trim_start_matches([' ', '\t']);
        match text.as_bytes().first() {
            Some(b';') => text = &text[1..],
            Some(b',') | None => return Some((node.unwrap_or(Hop::Unknown), text)),
            Some(_) => return None,
        }
    }
}

/// A pair's value (a token, or a quoted string with its escapes undone) and
/// what follows it.
fn pair_value(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((at, c)) = chars.next() {
            match c {
                '"' => return Some((value, &quoted[at + 1..])),
                '\\' => value.push(chars.next()?.1),
                c if c.is_control() && c != '\t' => return None,
                c => value.push(c),
            }
        }
        return None;
    }
    let end = text.find(|c: char| !is_token_char(c)).unwrap_or(text.len());
    let token = &text[..end];
    if token.is_empty() {
        return None;
    }
    Some((token.to_owned(), &text[end..]))
}

/// A `for=` node (RFC 7239 section 6): an address with an optional port,
/// `unknown`, or an obfuscated identifier.
fn forwarded_node(node: &str) -> Option<Hop> {
    if node.eq_ignore_ascii_case("unknown") || node.starts_with('_') {
        return obfuscated_or_unknown(node);
    }
    if let Some(bracketed) = node.strip_prefix('[') {
        let (ip, port) = bracketed.split_once(']')?;
        let ip = ip.parse::<Ipv6Addr>().ok()?;
        if !port.is_empty() {
            node_port(port.strip_prefix(':')?)?;
        }
        return Some(Hop::Address(IpAddr::V6(ip).to_canonical()));
    }
    let (ip, port) = match node.split_once(':') {
        Some((ip, port)) => (ip, Some(port)),
        None => (node, None),
    };
    let ip = ip.parse::<std::net::Ipv4Addr>().ok()?;
    if let Some(port) = port {
        node_port(port)?;
    }
    Some(Hop::Address(IpAddr::V4(ip)))
}

fn obfuscated_or_unknown(node: &str) -> Option<Hop> {
    let (name, port) = match node.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (node, None),
    };
    let valid_name = name.eq_ignore_ascii_case("unknown") || is_obfuscated(name);
    if !valid_name {
        return None;
    }
    if let Some(port) = port {
        node_port(port)?;
    }
    Some(Hop::Unknown)
}

/// A port: 1 to 5 digits, or an obfuscated one.
fn node_port(port: &str) -> Option<()> {
    let digits = !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
    (digits || is_obfuscated(port)).then_some(())
}

/// `_` followed by letters, digits, `.`, `_` or `-`.
fn is_obfuscated(text: &str) -> bool {
    text.strip_prefix('_').is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    })
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.chars().all(is_token_char)
}

/// A `tchar` of RFC 9110.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn trusted(ranges: &str) -> TrustedProxies {
        ranges.parse().unwrap()
    }

    fn xff(proxies: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        proxies.client(
            ip(peer),
            ForwardedHeader::XForwardedFor,
            lines.iter().map(|line| line.as_bytes()),
        )
    }

    fn forwarded(proxies: &TrustedProxies, peer: &str, lines: &[&str]) -> IpAddr {
        proxies.client(
            ip(peer),
            ForwardedHeader::Forwarded,
            lines.iter().map(|line| line.as_bytes()),
        )
    }

    #[test]
    fn ranges_and_single_addresses_are_read_and_a_bad_one_is_named() {
        let proxies = trusted(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8,");
        assert!(proxies.trusts(ip("10.1.2.3")));
        assert!(proxies.trusts(ip("192.0.2.7")));
        assert!(!proxies.trusts(ip("192.0.2.8")));
        assert!(proxies.trusts(ip("fd12::1")));
        assert!(
            proxies.trusts(ip("::ffff:10.0.0.1")),
            "an IPv4-mapped peer is its IPv4 address"
        );
        assert_eq!(proxies.to_string(), "10.0.0.0/8,192.0.2.7/32,fd00::/8");
        assert!(trusted("").is_empty());
        assert!(!trusted("10.0.0.0/8").trusts_everyone());
        assert!(trusted("0.0.0.0/0").trusts_everyone());
        for bad in ["10.0.0.0/33", "ingress", "10.0.0.0/8;", "10.0.0"] {
            let error = bad.parse::<TrustedProxies>().unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = trusted("10.0.0.0/8");
        assert_eq!(
            xff(&proxies, "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            xff(&TrustedProxies::default(), "10.0.0.1", &["198.51.100.1"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let proxies = trusted("10.0.0.0/8");
        // The client forged the left-most entry; the ingress appended the real one.
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["1.2.3.4, 198.51.100.7, 10.0.0.1"]),
            ip("198.51.100.7")
        );
        // Several lines are one list, in order.
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["1.2.3.4", "198.51.100.7,10.0.0.1"]),
            ip("198.51.100.7")
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["10.9.9.9, 10.0.0.1"]),
            ip("10.9.9.9")
        );
        // No header: the peer.
        assert_eq!(xff(&proxies, "10.0.0.2", &[]), ip("10.0.0.2"));
    }

    #[test]
    fn x_forwarded_for_takes_ipv6_and_ports() {
        let proxies = trusted("10.0.0.0/8");
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["2001:db8::1"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["[2001:db8::1]:4711"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["[2001:db8::1]"]),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["198.51.100.7:5555"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            xff(&proxies, "10.0.0.2", &["::ffff:198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn a_malformed_x_forwarded_for_gives_the_peer() {
        let proxies = trusted("10.0.0.0/8");
        for garbage in [
            "",
            "not-an-address",
            "1.2.3.4,,5.6.7.8",
            "1.2.3.4 5.6.7.8",
            "unknown",
            "1.2.3.4:99999",
            "fe80::1%eth0",
            "\u{fffd}",
        ] {
            assert_eq!(
                xff(&proxies, "10.0.0.2", &[garbage]),
                ip("10.0.0.2"),
                "{garbage:?}"
            );
        }
        let long = vec!["198.51.100.7"; MAX_HOPS + 1].join(",");
        assert_eq!(xff(&proxies, "10.0.0.2", &[&long]), ip("10.0.0.2"));
        let invalid_utf8: &[u8] = b"\xff\xfe";
        assert_eq!(
            proxies.client(
                ip("10.0.0.2"),
                ForwardedHeader::XForwardedFor,
                [invalid_utf8]
            ),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_is_read_as_rfc_7239_writes_it() {
        let proxies = trusted("10.0.0.0/8");
        let peer = "10.0.0.2";
        assert_eq!(
            forwarded(&proxies, peer, &["for=198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded(&proxies, peer, &["For=\"198.51.100.7:47011\""]),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded(&proxies, peer, &["for=\"[2001:db8:cafe::17]:4711\""]),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            forwarded(
                &proxies,
                peer,
                &["for=\"[2001:db8::1]\";proto=https;by=10.0.0.1"]
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            forwarded(
                &proxies,
                peer,
                &["for=1.2.3.4, for=198.51.100.7 ; proto=http, for=10.0.0.1"]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded(&proxies, peer, &["for=1.2.3.4", "for=198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            forwarded(&proxies, peer, &["for=\"198.51.\\100.7\""]),
            ip("198.51.100.7"),
            "a quoted-pair stands for its character"
        );
    }

    #[test]
    fn a_hidden_node_in_forwarded_stops_at_the_last_address_known() {
        let proxies = trusted("10.0.0.0/8");
        let peer = "10.0.0.2";
        assert_eq!(
            forwarded(&proxies, peer, &["for=_hidden, for=10.0.0.1"]),
            ip("10.0.0.1")
        );
        assert_eq!(forwarded(&proxies, peer, &["for=unknown"]), ip("10.0.0.2"));
        assert_eq!(
            forwarded(&proxies, peer, &["for=\"_gazonk:_port\""]),
            ip("10.0.0.2")
        );
        assert_eq!(forwarded(&proxies, peer, &["proto=https"]), ip("10.0.0.2"));
        assert_eq!(
            forwarded(&proxies, peer, &["for=198.51.100.7, for=_x"]),
            ip("10.0.0.2"),
            "whoever hid behind the trusted proxy, it is not the left-most entry"
        );
    }

    #[test]
    fn a_malformed_forwarded_gives_the_peer() {
        let proxies = trusted("10.0.0.0/8");
        for garbage in [
            "198.51.100.7",
            "for=",
            "for=2001:db8::1",
            "for=\"198.51.100.7",
            "for=198.51.100.7;for=1.2.3.4",
            "for=198.51.100.7 junk",
            "for=\"[2001:db8::1\"",
            "for=\"[2001:db8::1]x\"",
            "for=\"198.51.100.7:port\"",
            "for=_",
            "fo r=1.2.3.4",
            "for=1.2.3.4,,",
        ] {
            assert_eq!(
                forwarded(&proxies, "10.0.0.2", &[garbage]),
                ip("10.0.0.2"),
                "{garbage:?}"
            );
        }
    }
}

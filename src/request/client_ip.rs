//! The client's address: the TCP peer, or what trusted proxies in front of
//! us say in `X-Forwarded-For`.
//!
//! Anyone can send `X-Forwarded-For`, so it is read only when the peer is a
//! configured trusted proxy (`network.trusted_proxies`), and then only as far
//! as a chain of trusted proxies vouches for it: the list is walked from the
//! right (the hop nearest to us) and the first address that is not one of
//! our proxies is the client. Everything to its left was written by the
//! client and is ignored.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network};

/// The networks whose `X-Forwarded-For` entries are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNetwork>,
}

/// The resolved client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client, IPv4-mapped IPv6 addresses shown as IPv4.
    pub ip: IpAddr,
    /// Whether `ip` came from `X-Forwarded-For` rather than the TCP peer.
    pub from_xff: bool,
}

impl TrustedProxies {
    /// IPv4-mapped IPv6 networks (`::ffff:10.0.0.0/104`) are stored as the
    /// IPv4 networks they denote, because addresses are compared as IPv4.
    /// An IPv6 network shorter than /96 does not cover IPv4 clients: trust
    /// is never granted by accident.
    pub fn new(networks: Vec<IpNetwork>) -> Self {
        TrustedProxies {
            networks: networks.into_iter().map(canonical_network).collect(),
        }
    }

    /// Whether `ip` belongs to a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.networks.iter().any(|n| n.contains(ip))
    }

    /// Resolves the client from the TCP `peer` and the values of every
    /// `X-Forwarded-For` header in the order received (a header value that
    /// is not valid text should be passed as any non-address string, such as
    /// `"invalid"`, so it stops the walk).
    ///
    /// - Untrusted peer: the peer is the client; `X-Forwarded-For` is ignored.
    /// - Trusted peer: entries are walked right to left, skipping trusted
    ///   proxies; the first untrusted entry is the client. If every entry is
    ///   trusted, the leftmost is.
    /// - A malformed entry stops the walk: the client is the last good hop
    ///   to its right (or the peer), never a value nobody vouched for.
    /// - Entries may carry ports (`1.2.3.4:5678`, `[2001:db8::1]:443`);
    ///   empty list elements (`a,,b`) are skipped as RFC 9110 lists allow.
    pub fn resolve<'a>(&self, peer: IpAddr, xff: impl Iterator<Item = &'a str>) -> ClientAddr {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return ClientAddr {
                ip: peer,
                from_xff: false,
            };
        }
        // One left-to-right pass computes the right-to-left walk without
        // buffering: `stop` is the rightmost entry that would end the walk
        // (untrusted or malformed), `after_stop` the leftmost trusted entry
        // to its right, which is where the walk ends if `stop` is malformed
        // or absent.
        let mut stop: Option<Hop> = None;
        let mut after_stop: Option<IpAddr> = None;
        let entries = xff
            .flat_map(|value| value.split(','))
            .map(trim_ows)
            .filter(|entry| !entry.is_empty());
        for entry in entries {
            match parse_entry(entry).map(canonical_ip) {
                Some(ip) if self.is_trusted(ip) => {
                    after_stop.get_or_insert(ip);
                }
                Some(ip) => {
                    stop = Some(Hop::Untrusted(ip));
                    after_stop = None;
                }
                None => {
                    stop = Some(Hop::Malformed);
                    after_stop = None;
                }
            }
        }
        match (stop, after_stop) {
            (Some(Hop::Untrusted(ip)), _) => ClientAddr { ip, from_xff: true },
            (_, Some(ip)) => ClientAddr { ip, from_xff: true },
            (_, None) => ClientAddr {
                ip: peer,
                from_xff: false,
            },
        }
    }
}

/// Where a right-to-left walk over `X-Forwarded-For` stops.
#[derive(Debug, Clone, Copy)]
enum Hop {
    Untrusted(IpAddr),
    Malformed,
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4 address it
/// denotes: clients are compared as IPv4 wherever they are checked.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The client a counter (rate limit, bad signatures) charges: an IPv4
/// address as it is (IPv4-mapped ones as IPv4), an IPv6 address by its /64,
/// the block one host usually holds whole. Keyed by address, an IPv6 host
/// could spread its requests over 2^64 counters.
pub fn counted_client(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it denotes. A mapped network shorter than /96 stays IPv6 and so covers
/// no IPv4 client: access is never widened by accident.
pub fn canonical_network(network: IpNetwork) -> IpNetwork {
    if let IpNetwork::V6(v6) = network {
        if let (Some(v4), Some(prefix)) = (v6.ip().to_ipv4_mapped(), v6.prefix().checked_sub(96)) {
            if let Ok(v4_network) = Ipv4Network::new(v4, prefix) {
                return IpNetwork::V4(v4_network);
            }
        }
    }
    network
}

/// One `X-Forwarded-For` element: an address, optionally with a port
/// (IPv6 with a port must be bracketed). Anything else is `None`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(bracketed) = entry.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        let ip = inside.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(IpAddr::V6(ip)),
            port => is_port(port.strip_prefix(':')?).then_some(IpAddr::V6(ip)),
        };
    }
    let (host, port) = entry.split_once(':')?;
    let ip = host.parse::<Ipv4Addr>().ok()?;
    is_port(port).then_some(IpAddr::V4(ip))
}

fn is_port(port: &str) -> bool {
    (1..=5).contains(&port.len())
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// An address as text, written on the stack: the audit record and the
/// `X-Forwarded-For` header each need it once per request, and `Display`
/// goes through the formatting machinery octet by octet. IPv4 is written
/// digit by digit; IPv6 (rare behind the usual proxies) uses `Display`.
pub struct IpText {
    buf: [u8; 45],
    len: usize,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut text = IpText {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    if octet >= 100 {
                        text.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        text.push(b'0' + octet / 10 % 10);
                    }
                    text.push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::fmt::Write as _;
                // The longest IPv6 text (45 bytes, with an embedded IPv4)
                // fits, so this cannot fail; if it ever did, the text would
                // be cut short, never overrun.
                let _ = write!(text, "{v6}");
            }
        }
        text
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, dots, colons and hex letters are ever written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter()
                .map(|n| n.parse().expect("test network"))
                .collect(),
        )
    }

    struct Case {
        name: &'static str,
        peer: &'static str,
        xff: &'static [&'static str],
        want: &'static str,
        from_xff: bool,
    }

    #[test]
    fn client_is_the_first_untrusted_hop_from_the_right() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ffff::/48", "::ffff:192.168.0.0/112"]);
        let cases = [
            Case {
                name: "untrusted peer: XFF ignored (spoofing attempt)",
                peer: "203.0.113.9",
                xff: &["1.1.1.1"],
                want: "203.0.113.9",
                from_xff: false,
            },
            Case {
                name: "untrusted peer claiming to be a trusted proxy",
                peer: "203.0.113.9",
                xff: &["10.0.0.1"],
                want: "203.0.113.9",
                from_xff: false,
            },
            Case {
                name: "trusted peer without XFF: the peer",
                peer: "10.0.0.1",
                xff: &[],
                want: "10.0.0.1",
                from_xff: false,
            },
            Case {
                name: "trusted peer, one hop",
                peer: "10.0.0.1",
                xff: &["198.51.100.7"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "client-prepended spoof is left of the real client",
                peer: "10.0.0.1",
                xff: &["6.6.6.6, 198.51.100.7"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "chain of trusted hops is skipped",
                peer: "10.0.0.1",
                xff: &["6.6.6.6, 198.51.100.7, 10.1.1.1, 10.2.2.2"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "several headers form one list, in order",
                peer: "10.0.0.1",
                xff: &["6.6.6.6", "198.51.100.7", "10.1.1.1"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "all trusted: the leftmost",
                peer: "10.0.0.1",
                xff: &["10.9.9.9, 10.1.1.1"],
                want: "10.9.9.9",
                from_xff: true,
            },
            Case {
                name: "garbage right of the client: last good hop",
                peer: "10.0.0.1",
                xff: &["198.51.100.7, garbage, 10.1.1.1"],
                want: "10.1.1.1",
                from_xff: true,
            },
            Case {
                name: "garbage as the nearest entry: the peer",
                peer: "10.0.0.1",
                xff: &["198.51.100.7, not-an-ip"],
                want: "10.0.0.1",
                from_xff: false,
            },
            Case {
                name: "garbage left of the client is never reached",
                peer: "10.0.0.1",
                xff: &["<script>, 198.51.100.7"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "'unknown' stops the walk",
                peer: "10.0.0.1",
                xff: &["198.51.100.7, unknown, 10.1.1.1"],
                want: "10.1.1.1",
                from_xff: true,
            },
            Case {
                name: "garbage between trusted hops",
                peer: "10.0.0.1",
                xff: &["10.5.5.5, 1.2.3.4.5, 10.1.1.1, 10.2.2.2"],
                want: "10.1.1.1",
                from_xff: true,
            },
            Case {
                name: "empty list elements are skipped",
                peer: "10.0.0.1",
                xff: &[" , 198.51.100.7 ,, ", ""],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "IPv4 with port",
                peer: "10.0.0.1",
                xff: &["198.51.100.7:5678, 10.1.1.1:443"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "bracketed IPv6 with port",
                peer: "10.0.0.1",
                xff: &["[2001:db8::1]:443"],
                want: "2001:db8::1",
                from_xff: true,
            },
            Case {
                name: "bracketed IPv6 without port",
                peer: "10.0.0.1",
                xff: &["[2001:db8::1]"],
                want: "2001:db8::1",
                from_xff: true,
            },
            Case {
                name: "bare IPv6",
                peer: "10.0.0.1",
                xff: &["2001:db8::1, 2001:db8:ffff::5"],
                want: "2001:db8::1",
                from_xff: true,
            },
            Case {
                name: "bad port is garbage",
                peer: "10.0.0.1",
                xff: &["198.51.100.7:99999"],
                want: "10.0.0.1",
                from_xff: false,
            },
            Case {
                name: "unbracketed IPv6 with port is garbage",
                peer: "10.0.0.1",
                xff: &["198.51.100.7, 2001:db8::1:443:x"],
                want: "10.0.0.1",
                from_xff: false,
            },
            Case {
                name: "zone id is garbage",
                peer: "10.0.0.1",
                xff: &["fe80::1%eth0"],
                want: "10.0.0.1",
                from_xff: false,
            },
            Case {
                name: "IPv6 trusted peer and hops",
                peer: "2001:db8:ffff::1",
                xff: &["198.51.100.7, 2001:db8:ffff::2"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "mapped peer is trusted as its IPv4",
                peer: "::ffff:10.0.0.1",
                xff: &["198.51.100.7"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "mapped untrusted peer is reported as IPv4",
                peer: "::ffff:203.0.113.9",
                xff: &["1.1.1.1"],
                want: "203.0.113.9",
                from_xff: false,
            },
            Case {
                name: "mapped entries are trusted and reported as IPv4",
                peer: "10.0.0.1",
                xff: &["::ffff:198.51.100.7, ::ffff:10.1.1.1"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "mapped network trusts plain IPv4",
                peer: "192.168.3.4",
                xff: &["198.51.100.7, 192.168.9.9"],
                want: "198.51.100.7",
                from_xff: true,
            },
            Case {
                name: "mapped network does not over-trust",
                peer: "192.169.0.1",
                xff: &["198.51.100.7"],
                want: "192.169.0.1",
                from_xff: false,
            },
        ];
        for case in cases {
            let got = trusted.resolve(ip(case.peer), case.xff.iter().copied());
            assert_eq!(
                got,
                ClientAddr {
                    ip: ip(case.want),
                    from_xff: case.from_xff
                },
                "{}: client should be {} (from_xff {})",
                case.name,
                case.want,
                case.from_xff
            );
        }
    }

    #[test]
    fn no_trusted_proxies_means_the_peer_always() {
        let none = TrustedProxies::default();
        let got = none.resolve(ip("10.0.0.1"), ["1.2.3.4"].into_iter());
        assert_eq!(
            got,
            ClientAddr {
                ip: ip("10.0.0.1"),
                from_xff: false
            },
            "without trusted proxies XFF should never be read"
        );
    }

    #[test]
    fn wide_ipv6_networks_do_not_cover_ipv4() {
        let trusted = proxies(&["::/0"]);
        assert!(
            !trusted.is_trusted(ip("10.0.0.1")),
            "::/0 should not silently trust every IPv4 peer"
        );
        assert!(
            trusted.is_trusted(ip("2001:db8::1")),
            "::/0 should trust IPv6 peers"
        );
    }

    #[test]
    fn entry_parsing() {
        let cases: &[(&str, Option<&str>)] = &[
            ("1.2.3.4", Some("1.2.3.4")),
            ("1.2.3.4:80", Some("1.2.3.4")),
            ("1.2.3.4:", None),
            ("1.2.3.4:+80", None),
            ("1.2.3.4:080", Some("1.2.3.4")),
            ("1.2.3.4:123456", None),
            ("[::1]", Some("::1")),
            ("[::1]:8080", Some("::1")),
            ("[::1]8080", None),
            ("[1.2.3.4]", None),
            ("[::1", None),
            ("::1", Some("::1")),
            ("01.2.3.4", None),
            ("1.2.3", None),
            ("", None),
            ("é:1", None),
            ("[é]:1", None),
        ];
        for (entry, want) in cases {
            assert_eq!(
                parse_entry(entry),
                want.map(ip),
                "{entry:?} should parse as {want:?}"
            );
        }
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "203.0.113.9",
            "255.255.255.255",
            "10.0.5.1",
            "::1",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "::ffff:192.0.2.1",
        ] {
            let addr: IpAddr = ip.parse().expect("a test address");
            assert_eq!(IpText::new(addr).as_str(), addr.to_string(), "{ip}");
        }
    }

    #[test]
    fn counters_charge_an_ipv6_host_by_its_slash_64() {
        let key = |s: &str| counted_client(s.parse().expect("address")).to_string();
        assert_eq!(key("2001:db8:0:7:1:2:3:4"), "2001:db8:0:7::");
        assert_eq!(key("2001:db8:0:7::"), "2001:db8:0:7::");
        assert_eq!(key("::ffff:203.0.113.5"), "203.0.113.5");
        assert_eq!(key("203.0.113.5"), "203.0.113.5");
    }
}

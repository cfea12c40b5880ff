//! When the proxy's listeners are up, for `/readyz`.
//!
//! pingora binds a service's listeners as that service starts, each in its
//! own runtime, so the admin listener can answer before the proxy's
//! sockets exist: a readiness probe (or a test) would then send traffic to
//! a port nobody listens on yet. The gateway is ready only once the kernel
//! lists every proxy address as listening (Linux: `/proc/net/tcp` and
//! `tcp6`, read without touching the sockets: a probe connection would
//! count as a client, and as a failed handshake on a TLS listener). Where
//! those tables cannot be read, the listeners are taken as up.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How often the tables are read while waiting.
const POLL: Duration = Duration::from_millis(5);

/// Waits until every address in `addrs` is listening (see the module docs).
pub async fn wait_until_listening(addrs: &[SocketAddr]) {
    loop {
        match listening_now() {
            None => return,
            Some(table) if addrs.iter().all(|a| is_listed(&table, *a)) => return,
            Some(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// The local addresses in LISTEN state, or `None` if the kernel's tables
/// cannot be read.
fn listening_now() -> Option<Vec<SocketAddr>> {
    let v4 = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    Some(
        v4.lines()
            .chain(v6.lines())
            .filter_map(listening_entry)
            .collect(),
    )
}

/// One table row's local address, if the socket is listening (state
/// `0A`): `sl local_address rem_address st …`, the address in hex, each
/// 32-bit word of it in host (little-endian) order.
fn listening_entry(line: &str) -> Option<SocketAddr> {
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != "0A" {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::from(w.swap_bytes().to_be_bytes()),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (chunk, w) in bytes.chunks_mut(4).zip([a, b, c, d]) {
                chunk.copy_from_slice(&w.swap_bytes().to_be_bytes());
            }
            IpAddr::from(bytes)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether `addr` is served by a listening socket in `table`: the same
/// address, or the wildcard of either family on its port (a `[::]`
/// socket takes IPv4 too unless it is v6-only).
fn is_listed(table: &[SocketAddr], addr: SocketAddr) -> bool {
    table
        .iter()
        .any(|l| l.port() == addr.port() && (l.ip() == addr.ip() || l.ip().is_unspecified()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_read_as_listening_addresses() {
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  0 0 1 1 0 100 0 0 10 0";
        assert_eq!(
            listening_entry(v4),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(listening_entry(&established), None);
        let v6 = "   1: 00000000000000000000000001000000:2382 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 2 1 0 100 0 0 10 0";
        assert_eq!(
            listening_entry(v6),
            Some("[::1]:9090".parse().expect("addr"))
        );
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert_eq!(listening_entry(header), None);
    }

    #[test]
    fn a_wildcard_socket_serves_every_address_on_its_port() {
        let table: Vec<SocketAddr> = vec![
            "0.0.0.0:8080".parse().expect("addr"),
            "127.0.0.1:9180".parse().expect("addr"),
        ];
        assert!(is_listed(&table, "10.0.0.5:8080".parse().expect("addr")));
        assert!(is_listed(&table, "127.0.0.1:9180".parse().expect("addr")));
        assert!(!is_listed(&table, "127.0.0.2:9180".parse().expect("addr")));
        assert!(!is_listed(&table, "127.0.0.1:9181".parse().expect("addr")));
    }

    #[tokio::test]
    async fn a_bound_listener_is_found_in_the_kernels_table() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Returns at once: the socket is listening.
        wait_until_listening(&[addr]).await;
        if let Some(table) = listening_now() {
            assert!(is_listed(&table, addr), "{addr} in {table:?}");
            drop(listener);
            let table = listening_now().expect("table");
            assert!(!is_listed(&table, addr), "closed: {addr} in {table:?}");
        }
    }
}

//! Who connected to one of our loopback listeners (the sign-in redirect):
//! TCP carries no credentials, but the kernel lists the owner of every TCP
//! socket in `/proc/net/tcp` and `/proc/net/tcp6`, as identd once read it.
//! The peer's socket is the one whose local address is the peer's and whose
//! remote address is ours.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Lines read from one table at most (a busy machine has thousands of
/// sockets; this bounds the work whatever it has).
const MAX_LINES: usize = 1 << 20;

/// The uid owning the socket at `peer` connected to `ours`, if the kernel
/// lists it (it does not once the peer has closed).
pub(crate) fn peer_uid(ours: SocketAddr, peer: SocketAddr) -> Option<u32> {
    peer_socket(ours, peer).map(|(uid, _)| uid)
}

/// The uid owning the socket at `peer` connected to `ours`, and the
/// socket's inode (by which its process is found).
pub(crate) fn peer_socket(ours: SocketAddr, peer: SocketAddr) -> Option<(u32, u64)> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let file = std::fs::File::open(table).ok()?;
            std::io::BufReader::new(file)
                .lines()
                .skip(1)
                .take(MAX_LINES)
                .map_while(Result::ok)
                .find_map(|line| socket_in_line(&line, peer, ours))
        })
}

/// The uid of the socket on `line` if its local address is `local` and its
/// remote address `remote`.
#[cfg(test)]
fn owner_in_line(line: &str, local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    socket_in_line(line, local, remote).map(|(uid, _)| uid)
}

/// The uid and inode of the socket on `line` if its local address is
/// `local` and its remote address `remote`.
fn socket_in_line(line: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u32, u64)> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    let mut fields = line.split_whitespace();
    let (_, l, r) = (fields.next()?, fields.next()?, fields.next()?);
    if !same(parse_address(l)?, local) || !same(parse_address(r)?, remote) {
        return None;
    }
    let uid = fields.nth(4)?.parse().ok()?;
    let inode = fields.nth(1).and_then(|i| i.parse().ok()).unwrap_or(0);
    Some((uid, inode))
}

/// Processes looked at, at most, for the one holding a socket.
const MAX_PROCESSES: usize = 1 << 16;

/// A process of `uid` holding the socket with inode `inode` (the one that
/// connected, or one it shares the socket with).
pub(crate) fn socket_holder(uid: u32, inode: u64) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    if inode == 0 {
        return None;
    }
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .take(MAX_PROCESSES)
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
        .filter(|(_, path)| std::fs::metadata(path).is_ok_and(|m| m.uid() == uid))
        .find(|(_, path)| {
            let Ok(fds) = std::fs::read_dir(path.join("fd")) else {
                return false;
            };
            fds.take(MAX_LINES).filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str())
            })
        })
        .map(|(pid, _)| pid)
}

/// Equal addresses, an IPv4 address and its IPv6-mapped form alike.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6): each 32-bit
/// word is printed as the kernel holds it, in this machine's byte order.
fn parse_address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_endian = "little")]
    #[test]
    fn table_lines_are_read_as_the_kernel_writes_them() {
        let line = "   3: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 4242 1 0000000000000000 20 4 30 10 -1";
        let peer: SocketAddr = "127.0.0.1:41394".parse().unwrap();
        let ours: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(owner_in_line(line, peer, ours), Some(65534));
        // The other direction is our own socket, not the peer's.
        assert_eq!(owner_in_line(line, ours, peer), None);
        let v6 = "   0: 0000000000000000FFFF00000100007F:A1B2 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1 1";
        assert_eq!(owner_in_line(v6, peer, ours), Some(1000));
        let loopback6 =
            "0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000";
        assert_eq!(
            parse_address(loopback6.split_whitespace().nth(1).unwrap()),
            Some("[::1]:80".parse().unwrap())
        );
        for bad in [
            "",
            "zz:1",
            "0100007F",
            "0100007F:",
            "0100007F:1:2",
            "01007F:0050",
        ] {
            assert_eq!(parse_address(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_connection_of_ours_is_found_with_our_uid() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(peer_uid(listener.local_addr().unwrap(), peer), Some(me));
        // An address nobody is connected from.
        let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(peer_uid(listener.local_addr().unwrap(), nobody), None);
        // The process holding the peer's socket is this one.
        let (uid, inode) = peer_socket(listener.local_addr().unwrap(), peer).unwrap();
        assert_eq!(socket_holder(uid, inode), Some(std::process::id()));
        assert_eq!(socket_holder(uid, 1), None);
    }
}

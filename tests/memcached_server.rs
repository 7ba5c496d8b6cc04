//! The `tickcache-server` binary over loopback: many connections with pipelined requests,
//! stalled half-commands, bounded memory (RSS), graceful shutdown and persistence on the
//! fixed table; megabyte items, the item limit and the memory limit on the heap table (the
//! default).
#![cfg(all(feature = "server", target_os = "linux"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// The fixed table: 1,024 items of up to 1,000 bytes.
    fn start(extra: &[&str]) -> Server {
        let mut args = vec!["--fixed", "--capacity", "1024", "--item-size-max", "1000"];
        args.extend_from_slice(extra);
        Server::with(&args)
    }

    /// The server with only `args` (and a free loopback port).
    fn with(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickcache-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> bool {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `req` and reads until the reply ends with `end` (bounded by the read timeout).
fn roundtrip(s: &mut TcpStream, req: &[u8], end: &[u8], count: usize) -> Vec<u8> {
    s.write_all(req).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    for _ in 0..100_000 {
        if got.windows(end.len()).filter(|w| *w == end).count() >= count {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn many_pipelined_connections_and_stalled_clients_in_bounded_memory() {
    let server = Server::start(&["--request-timeout", "2", "--max-conns", "2000"]);
    let base = server.rss_kib();
    // Stalled clients: half a command line, half a data block, and an oversized block.
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut s = server.connect();
        let part: &[u8] = match i % 3 {
            0 => b"get some_ke",
            1 => b"set k 0 0 900\r\nonly part of the data",
            _ => b"set k 0 0 5000000\r\nxxxxxxxx",
        };
        s.write_all(part).unwrap();
        stalled.push(s);
    }
    // Busy clients: 100 connections, each pipelining 200 commands per write, 5 rounds.
    let mut busy: Vec<TcpStream> = (0..100).map(|_| server.connect()).collect();
    for round in 0..5 {
        for (c, s) in busy.iter_mut().enumerate() {
            let mut req = Vec::new();
            for i in 0..100 {
                let key = format!("c{c}_k{i}");
                req.extend_from_slice(format!("set {key} {round} 0 32\r\n").as_bytes());
                req.extend_from_slice(&[b'v'; 32]);
                req.extend_from_slice(b"\r\n");
                req.extend_from_slice(format!("get {key}\r\n").as_bytes());
            }
            let got = roundtrip(s, &req, b"END\r\n", 100);
            assert_eq!(got.windows(8).filter(|w| w == b"STORED\r\n").count(), 100);
            assert_eq!(got.windows(6).filter(|w| w == b"VALUE ").count(), 100);
        }
    }
    let loaded = server.rss_kib();
    // 400 connections with 16 KiB buffers (grown for a large command), a 1024-item table: far
    // below 64 MiB above the idle server.
    assert!(loaded < base + 64 * 1024, "RSS {base} KiB -> {loaded} KiB");
    // The stalled clients are closed after the request timeout.
    std::thread::sleep(Duration::from_millis(2500));
    for mut s in stalled {
        // The oversized set was answered at once; then the connection ends.
        let mut b = [0u8; 64];
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let closed = (0..4).any(|_| matches!(s.read(&mut b), Ok(0) | Err(_)));
        assert!(closed, "stalled client still open");
    }
    // The server is still serving.
    let mut s = server.connect();
    assert!(roundtrip(&mut s, b"get c99_k99\r\n", b"END\r\n", 1).starts_with(b"VALUE c99_k99 4 32"));
    assert!(server.terminate());
}

/// True when the server has closed `s` (end of stream or a reset); waits up to `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected reply {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn request_timeout_is_a_deadline_for_the_whole_command() {
    let server = Server::start(&["--request-timeout", "1"]);
    let mut other = server.connect();
    let mut dripper = server.connect();
    // 47 bytes at one every 200 ms would take over 9 s; the deadline is 1 s from the first.
    let mut cmd = b"set drip 0 0 30\r\n".to_vec();
    cmd.extend_from_slice(&[b'd'; 30]);
    cmd.extend_from_slice(b"\r\n");
    let first = Instant::now();
    let mut closed_after = None;
    for &byte in &cmd {
        if dripper.write_all(&[byte]).is_err() {
            closed_after = Some(first.elapsed());
            break;
        }
        // Another client is served meanwhile.
        assert_eq!(
            roundtrip(&mut other, b"get drip\r\n", b"END\r\n", 1),
            b"END\r\n"
        );
        if closed_within(&mut dripper, Duration::from_millis(200)) {
            closed_after = Some(first.elapsed());
            break;
        }
    }
    let after = closed_after.expect("a client dripping a command was never closed");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "closed after {after:?}"
    );
    // Nothing of the dripped command was stored, and the other client is still served.
    assert_eq!(
        roundtrip(&mut other, b"get drip\r\n", b"END\r\n", 1),
        b"END\r\n"
    );
    // A client idle between commands is not closed by the request timeout (and by default
    // not at all, as memcached), however long the pause.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        roundtrip(&mut other, b"set k 0 0 1\r\nx\r\n", b"\r\n", 1),
        b"STORED\r\n"
    );
    assert!(server.terminate());
}

#[test]
fn idle_timeout_only_when_asked_for() {
    let server = Server::start(&["--idle-timeout", "1"]);
    let mut s = server.connect();
    assert_eq!(roundtrip(&mut s, b"get a\r\n", b"END\r\n", 1), b"END\r\n");
    let start = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)),
        "idle client kept"
    );
    let after = start.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "{after:?}"
    );
}

#[test]
fn too_many_connections_are_refused_politely() {
    let server = Server::start(&["--max-conns", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| server.connect()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = server.connect();
    let mut b = [0u8; 128];
    let n = extra.read(&mut b).unwrap();
    assert_eq!(&b[..n], b"SERVER_ERROR too many open connections\r\n");
    drop(held);
}

#[test]
fn persistence_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("tickcache-server-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("cache.flash");
    let _ = std::fs::remove_file(&image);
    let path = image.to_str().unwrap();
    for policy in [&[][..], &["--write-back", "8"][..]] {
        let _ = std::fs::remove_file(&image);
        // --persist selects the fixed table by itself.
        let mut args = vec!["--persist", path, "--persist-mb", "2", "--capacity", "1024"];
        args.extend_from_slice(policy);
        let server = Server::with(&args);
        let mut s = server.connect();
        let mut req = Vec::new();
        for i in 0..50 {
            req.extend_from_slice(format!("set k{i} {i} 0 3\r\nv{i:02}\r\n").as_bytes());
        }
        req.extend_from_slice(
            b"set gone 0 0 1\r\nx\r\ndelete gone\r\nset n 0 0 1\r\n5\r\nincr n 2\r\n",
        );
        roundtrip(&mut s, &req, b"7\r\n", 1);
        let before = roundtrip(&mut s, b"gets k7\r\n", b"END\r\n", 1);
        assert!(server.terminate(), "graceful exit");
        let server = Server::with(&args);
        let mut s = server.connect();
        let got = roundtrip(&mut s, b"get k0 k49 gone n\r\n", b"END\r\n", 1);
        assert_eq!(
            got,
            b"VALUE k0 0 3\r\nv00\r\nVALUE k49 49 3\r\nv49\r\nVALUE n 0 1\r\n7\r\nEND\r\n",
            "{policy:?}: {}",
            String::from_utf8_lossy(&got)
        );
        // Cas uniques continue after the restart: the old one still matches, new ones differ.
        assert_eq!(roundtrip(&mut s, b"gets k7\r\n", b"END\r\n", 1), before);
        assert!(server.terminate());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `STAT name value` lines of a `stats` reply.
fn stats(s: &mut TcpStream) -> std::collections::HashMap<String, String> {
    let got = roundtrip(s, b"stats\r\n", b"END\r\n", 1);
    String::from_utf8(got)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stat(st: &std::collections::HashMap<String, String>, name: &str) -> u64 {
    st.get(name)
        .unwrap_or_else(|| panic!("no {name} in {st:?}"))
        .parse()
        .unwrap()
}

fn set_cmd(key: &str, flags: u32, data: &[u8]) -> Vec<u8> {
    let mut cmd = format!("set {key} {flags} 0 {}\r\n", data.len()).into_bytes();
    cmd.extend_from_slice(data);
    cmd.extend_from_slice(b"\r\n");
    cmd
}

/// Django's `get_many` of 2,000 keys is one `get` line of about 30 KB: answered whole.
#[test]
fn a_multi_get_of_two_thousand_keys_is_answered() {
    let server = Server::with(&[]);
    let mut s = server.connect();
    let mut sets = Vec::new();
    for i in (0..2000).step_by(2) {
        sets.extend_from_slice(&set_cmd(
            &format!(":1:key_{i:05}"),
            0,
            format!("v{i}").as_bytes(),
        ));
    }
    let stored = roundtrip(&mut s, &sets, b"STORED\r\n", 1000);
    assert_eq!(
        stored.windows(8).filter(|w| w == b"STORED\r\n").count(),
        1000
    );
    let mut get = b"get".to_vec();
    for i in 0..2000 {
        get.extend_from_slice(format!(" :1:key_{i:05}").as_bytes());
    }
    get.extend_from_slice(b"\r\n");
    assert!(get.len() > 8192 * 2);
    let got = roundtrip(&mut s, &get, b"END\r\n", 1);
    assert!(
        got.ends_with(b"END\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[..200.min(got.len())])
    );
    for i in (0..2000).step_by(2) {
        let head = format!(
            "VALUE :1:key_{i:05} 0 {}\r\nv{i}\r\n",
            format!("v{i}").len()
        );
        assert!(
            got.windows(head.len()).any(|w| w == head.as_bytes()),
            "{head}"
        );
    }
    assert_eq!(got.windows(6).filter(|w| w == b"VALUE ").count(), 1000);
    // The connection goes on.
    assert_eq!(
        roundtrip(&mut s, b"get :1:key_00000\r\n", b"END\r\n", 1),
        b"VALUE :1:key_00000 0 2\r\nv0\r\nEND\r\n"
    );
    assert!(server.terminate());
}

/// memcached's defaults: a 1 MiB item is stored and read back whole, one byte more is
/// refused and unlinks the old value, and the connection goes on.
#[test]
fn a_megabyte_item_round_trips_on_the_default_server() {
    let server = Server::with(&[]);
    let mut s = server.connect();
    let st = stats(&mut s);
    assert_eq!(stat(&st, "item_size_max"), 1 << 20);
    assert_eq!(stat(&st, "limit_maxbytes"), 64 << 20);
    assert_eq!(stat(&st, "bytes"), 0);
    // Every byte differs from its neighbours, so a misplaced block would show.
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        roundtrip(&mut s, &set_cmd("big", 42, &data), b"\r\n", 1),
        b"STORED\r\n"
    );
    let got = roundtrip(&mut s, b"get big\r\n", b"\r\nEND\r\n", 1);
    let head = b"VALUE big 42 1048576\r\n";
    assert_eq!(&got[..head.len()], head);
    assert_eq!(got.len(), head.len() + data.len() + 7);
    assert!(got[head.len()..head.len() + data.len()] == data[..]);
    let bytes = stat(&stats(&mut s), "bytes");
    assert!((1 << 20) < bytes && bytes < (1 << 20) + 1024, "{bytes}");

    let over = vec![b'o'; (1 << 20) + 1];
    assert_eq!(
        roundtrip(&mut s, &set_cmd("big", 0, &over), b"\r\n", 1),
        b"SERVER_ERROR object too large for cache\r\n"
    );
    assert_eq!(roundtrip(&mut s, b"get big\r\n", b"END\r\n", 1), b"END\r\n");
    assert_eq!(stat(&stats(&mut s), "bytes"), 0);
    assert!(server.terminate());
}

/// `-I 100k`: 102,400 bytes are stored, 102,401 are refused cleanly (the block is read and
/// dropped, the old value unlinked, the next command on the connection answered).
#[test]
fn an_item_just_over_the_item_limit_is_refused() {
    let server = Server::with(&["-I", "100k"]);
    let mut s = server.connect();
    assert_eq!(stat(&stats(&mut s), "item_size_max"), 102_400);
    let fits = vec![b'f'; 102_400];
    assert_eq!(
        roundtrip(&mut s, &set_cmd("k", 0, &fits), b"\r\n", 1),
        b"STORED\r\n"
    );
    let mut req = set_cmd("k", 0, &vec![b'x'; 102_401]);
    req.extend_from_slice(b"get k\r\n");
    assert_eq!(
        roundtrip(&mut s, &req, b"END\r\n", 1),
        b"SERVER_ERROR object too large for cache\r\nEND\r\n"
    );
    // add is refused the same way but leaves nothing to unlink; the limit is on the data.
    let mut req = b"add k 0 0 102401\r\n".to_vec();
    req.extend_from_slice(&vec![b'x'; 102_401]);
    req.extend_from_slice(b"\r\nset small 0 0 2\r\nok\r\n");
    assert_eq!(
        roundtrip(&mut s, &req, b"STORED\r\n", 1),
        b"SERVER_ERROR object too large for cache\r\nSTORED\r\n"
    );
    assert!(server.terminate());
}

/// `-m 4`: 40 MiB of 64 KiB items through a 4 MiB budget. The least recently used items
/// are evicted (one read after every write keeps the first one alive), `bytes` never passes
/// `limit_maxbytes`, and the process's memory grows by about the budget, not the data.
#[test]
fn storing_more_than_the_memory_limit_evicts_lru_items_in_bounded_memory() {
    let server = Server::with(&["-m", "4", "--max-item-size", "200k"]);
    let mut s = server.connect();
    let base = server.rss_kib();
    let data = vec![b'v'; 64 << 10];
    assert_eq!(
        roundtrip(&mut s, &set_cmd("keep", 0, &data), b"\r\n", 1),
        b"STORED\r\n"
    );
    for i in 0..640 {
        let mut req = set_cmd(&format!("k{i}"), 0, &data);
        req.extend_from_slice(b"get keep\r\n");
        let got = roundtrip(&mut s, &req, b"END\r\n", 1);
        assert!(got.starts_with(b"STORED\r\nVALUE keep 0 65536\r\n"), "{i}");
        if i % 64 == 0 {
            let st = stats(&mut s);
            assert!(stat(&st, "bytes") <= stat(&st, "limit_maxbytes"), "{st:?}");
        }
    }
    let st = stats(&mut s);
    assert_eq!(stat(&st, "limit_maxbytes"), 4 << 20);
    let (bytes, items) = (stat(&st, "bytes"), stat(&st, "curr_items"));
    assert!(bytes <= 4 << 20 && bytes > 3 << 20, "{bytes}");
    // 4 MiB hold 63 items of 64 KiB and their bookkeeping; the rest were evicted.
    assert!((55..=64).contains(&items), "{items}");
    assert_eq!(stat(&st, "evictions"), 641 - items);
    let got = roundtrip(&mut s, b"get k0 k500 k639 keep\r\n", b"END\r\n", 1);
    let got = String::from_utf8_lossy(&got);
    assert!(
        !got.contains("VALUE k0 ") && !got.contains("VALUE k500 "),
        "{got:.200}"
    );
    assert!(got.contains("VALUE k639 ") && got.contains("VALUE keep "));
    let grown = server.rss_kib().saturating_sub(base);
    assert!(
        grown < 16 << 10,
        "RSS grew by {grown} KiB for a 4 MiB budget"
    );
    assert!(server.terminate());
}

/// The heap table idles small: no table is reserved at start.
#[test]
fn the_default_server_idles_small() {
    let server = Server::with(&[]);
    let mut s = server.connect();
    assert_eq!(roundtrip(&mut s, b"get a\r\n", b"END\r\n", 1), b"END\r\n");
    let rss = server.rss_kib();
    assert!(rss < 16 << 10, "idle RSS {rss} KiB");
}

/// Connections do not hold the item limit: after a 1 MiB item went through (and its
/// connection closed), 200 connections that send small commands cost about their 16 KiB
/// buffers, not 1 MiB each; a connection that sends a large item gives the memory back.
#[test]
fn connections_do_not_reserve_the_item_limit() {
    let server = Server::with(&[]);
    let data = vec![b'd'; 1 << 20];
    for _ in 0..3 {
        let mut s = server.connect();
        assert_eq!(
            roundtrip(&mut s, &set_cmd("big", 0, &data), b"\r\n", 1),
            b"STORED\r\n"
        );
        roundtrip(&mut s, b"get big\r\n", b"\r\nEND\r\n", 1);
    }
    std::thread::sleep(Duration::from_millis(200));
    let base = server.rss_kib();
    let mut held = Vec::new();
    for i in 0..200 {
        let mut s = server.connect();
        let got = roundtrip(&mut s, format!("get k{i}\r\n").as_bytes(), b"END\r\n", 1);
        assert_eq!(got, b"END\r\n");
        held.push(s);
    }
    // One of them sends a large item; its buffer shrinks back afterwards.
    assert_eq!(
        roundtrip(&mut held[0], &set_cmd("big2", 0, &data), b"\r\n", 1),
        b"STORED\r\n"
    );
    assert_eq!(
        roundtrip(&mut held[0], b"get nothing\r\n", b"END\r\n", 1),
        b"END\r\n"
    );
    let grown = server.rss_kib().saturating_sub(base);
    assert!(
        grown < 24 << 10,
        "200 connections grew RSS by {grown} KiB (1 MiB each would be 200 MiB)"
    );
    drop(held);
    assert!(server.terminate());
}

/// Writes `chunk` to `s` (non-blocking) until the server stops reading it or `until` passes;
/// true when it stopped reading.
fn write_until_blocked(s: &mut TcpStream, chunk: &[u8], until: Instant) -> bool {
    s.set_nonblocking(true).unwrap();
    while Instant::now() < until {
        match s.write(chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) => panic!("write: {e}"),
        }
    }
    false
}

/// Clients that pipeline `stats` and `get` of a large item without reading their replies:
/// each is no longer read once its replies back up (a bounded backlog per connection, the
/// large value sent from the table rather than copied per connection), other clients are
/// served meanwhile, a stalled client that finally reads gets every reply intact, and the
/// memory comes back after they close. (scripts/pipeline_memory.py measures 1,000.)
#[test]
fn clients_that_do_not_read_are_not_read_and_memory_is_bounded() {
    let server = Server::with(&["--request-timeout", "60", "--max-conns", "2000"]);
    let big = vec![b'b'; 1 << 20];
    let mut s = server.connect();
    assert_eq!(
        roundtrip(&mut s, &set_cmd("big", 3, &big), b"\r\n", 1),
        b"STORED\r\n"
    );
    // A multi-get of 2,000 keys of 10 KiB (a 20 MiB reply), not read either.
    let mid = vec![b'm'; 10 << 10];
    for i in 0..2000 {
        s.write_all(&set_cmd(&format!("m{i}"), 0, &mid)).unwrap();
    }
    let got = roundtrip(&mut s, b"get none\r\n", b"END\r\n", 1);
    assert_eq!(got.windows(8).filter(|w| w == b"STORED\r\n").count(), 2000);
    std::thread::sleep(Duration::from_millis(1500));
    let base = server.rss_kib();

    let chunk = b"stats\r\nget big\r\n".repeat(512);
    let until = Instant::now() + Duration::from_secs(20);
    let mut stalled: Vec<TcpStream> = (0..200).map(|_| server.connect()).collect();
    let mut multi = server.connect();
    let keys: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    multi
        .write_all(format!("get {}\r\n", keys.join(" ")).as_bytes())
        .unwrap();
    for c in &mut stalled {
        assert!(write_until_blocked(c, &chunk, until), "server kept reading");
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = server.rss_kib();
    // Copying the 1 MiB item per connection would be 200 MiB; the 20 MiB multi-get reply
    // is not held either.
    let grown = during.saturating_sub(base);
    assert!(grown < 16 << 10, "RSS {base} KiB -> {during} KiB");

    // Another client is served meanwhile.
    let mut other = server.connect();
    let got = roundtrip(&mut other, b"get m7\r\n", b"END\r\n", 1);
    assert!(got.starts_with(b"VALUE m7 0 10240\r\nmmm"));

    // The multi-get's reply, read now, is complete.
    let mut reply = Vec::new();
    let mut b = vec![0u8; 1 << 16];
    while !reply.ends_with(b"END\r\n") {
        let n = multi.read(&mut b).unwrap();
        assert!(n > 0);
        reply.extend_from_slice(&b[..n]);
    }
    let item = |k: &str| {
        let mut v = format!("VALUE {k} 0 10240\r\n").into_bytes();
        v.extend_from_slice(&mid);
        v.extend_from_slice(b"\r\n");
        v
    };
    let want: Vec<u8> = keys
        .iter()
        .flat_map(|k| item(k))
        .chain(*b"END\r\n")
        .collect();
    assert!(
        reply == want,
        "multi-get reply of {} bytes differs",
        reply.len()
    );

    // A stalled client reading now gets intact replies: the first few are checked.
    let c = &mut stalled[0];
    c.set_nonblocking(false).unwrap();
    let mut head = b"VALUE big 3 1048576\r\n".to_vec();
    head.extend_from_slice(&big);
    head.extend_from_slice(b"\r\nEND\r\n");
    let mut got = Vec::new();
    while got.windows(head.len()).filter(|w| *w == &head[..]).count() < 3 {
        let n = c.read(&mut b).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&b[..n]);
    }
    assert!(got.starts_with(b"STAT pid "));

    // Closed, they give the memory back.
    drop(stalled);
    std::thread::sleep(Duration::from_millis(2500));
    let after = server.rss_kib();
    eprintln!("RSS {base} KiB, {during} KiB with 200 stalled clients, {after} KiB after");
    assert!(
        after < base + (4 << 10),
        "RSS {base} KiB, {during} KiB with the clients, {after} KiB after they closed"
    );
    assert!(server.terminate());
}

/// Four worker threads over four shards: clients on every thread see each other's writes,
/// a multi-get spans the shards, `stats` sums them, `flush_all` and `stats reset` reach
/// every shard, and the memory limit holds over all of them.
#[test]
fn four_threads_over_shards_behave_as_one_cache() {
    let server = Server::with(&["--threads", "4", "-m", "8", "-I", "100k"]);
    // Eight clients write 250 keys each, in parallel; each then reads another's keys.
    let writers: Vec<_> = (0..8)
        .map(|c| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut req = Vec::new();
                for i in 0..250 {
                    req.extend_from_slice(&set_cmd(&format!("c{c}k{i}"), c, b"value"));
                }
                let got = roundtrip(&mut s, &req, b"STORED\r\n", 250);
                assert_eq!(got.len(), 250 * 8);
                s
            })
        })
        .collect();
    let mut conns: Vec<TcpStream> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    for (c, s) in conns.iter_mut().enumerate() {
        let other = (c + 1) % 8;
        let keys: Vec<String> = (0..250).map(|i| format!("c{other}k{i}")).collect();
        let got = roundtrip(
            s,
            format!("get {} nokey\r\n", keys.join(" ")).as_bytes(),
            b"END\r\n",
            1,
        );
        let text = String::from_utf8(got).unwrap();
        for k in &keys {
            assert!(
                text.contains(&format!("VALUE {k} {other} 5\r\nvalue\r\n")),
                "{k}"
            );
        }
    }
    let s = &mut conns[0];
    let st = stats(s);
    assert_eq!(stat(&st, "threads"), 4);
    assert_eq!(stat(&st, "curr_items"), 2000);
    assert_eq!(stat(&st, "total_items"), 2000);
    assert_eq!(stat(&st, "cmd_set"), 2000);
    assert_eq!(stat(&st, "cmd_get"), 2008);
    assert_eq!(stat(&st, "get_hits"), 2000);
    assert_eq!(stat(&st, "get_misses"), 8);
    assert_eq!(stat(&st, "item_size_max"), 100 << 10);
    assert!(stat(&st, "limit_maxbytes") <= 8 << 20);
    assert!(stat(&st, "limit_maxbytes") > (8 << 20) - 4);
    // The memory limit holds over the shards: 16 MB of 64 KiB items into 8 MiB.
    let data = vec![b'x'; 64 << 10];
    for i in 0..256 {
        assert_eq!(
            roundtrip(s, &set_cmd(&format!("big{i}"), 0, &data), b"\r\n", 1),
            b"STORED\r\n"
        );
    }
    let st = stats(s);
    assert!(stat(&st, "bytes") <= stat(&st, "limit_maxbytes"));
    assert!(stat(&st, "evictions") > 100);
    let got = roundtrip(s, b"get big255\r\n", b"END\r\n", 1);
    assert!(got.starts_with(b"VALUE big255 0 65536\r\nxxx"));
    // flush_all empties every shard, with one reply; stats reset zeroes every shard.
    assert_eq!(roundtrip(s, b"flush_all\r\n", b"\r\n", 1), b"OK\r\n");
    let keys: Vec<String> = (0..250).map(|i| format!("c3k{i}")).collect();
    let got = roundtrip(
        s,
        format!("get {}\r\n", keys.join(" ")).as_bytes(),
        b"END\r\n",
        1,
    );
    assert_eq!(got, b"END\r\n");
    assert_eq!(stat(&stats(s), "cmd_flush"), 1);
    assert_eq!(roundtrip(s, b"stats reset\r\n", b"\r\n", 1), b"RESET\r\n");
    let st = stats(s);
    assert_eq!(stat(&st, "cmd_get"), 0);
    assert_eq!(stat(&st, "cmd_flush"), 0);
    assert!(server.terminate());
}

/// Each thread's scheduling policy (`/proc/PID/task/TID/stat`, field 41: 0 normal, 3
/// `SCHED_BATCH`), keyed by the thread's name.
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // After the name in parentheses (which may hold spaces): field 3 onwards.
        let rest = stat.rsplit_once(") ").unwrap().1;
        let policy = rest.split(' ').nth(41 - 3).unwrap().parse().unwrap();
        out.push((name.trim().to_string(), policy));
    }
    out
}

/// With two or more workers, the workers run under `SCHED_BATCH` (a request arriving does not
/// preempt the client that sent it; the worker serves what arrived meanwhile in one turn) and
/// the accepting thread under the normal policy; `--no-batch` and a single worker leave every
/// thread normal.
#[test]
fn worker_threads_run_as_batch_unless_no_batch() {
    let served = |args: &[&str]| {
        let server = Server::with(args);
        // A worker has set its policy once it has served a request: one per worker.
        let workers: usize = args[1].parse().unwrap();
        let mut conns: Vec<_> = (0..workers).map(|_| server.connect()).collect();
        for s in &mut conns {
            assert_eq!(
                roundtrip(s, &set_cmd("k", 0, b"v"), b"\r\n", 1),
                b"STORED\r\n"
            );
        }
        let policies = thread_policies(server.child.id());
        assert_eq!(policies.len(), workers + 1, "{policies:?}");
        policies
    };
    for (name, policy) in served(&["--threads", "4"]) {
        let want = if name.starts_with("worker") { 3 } else { 0 };
        assert_eq!(policy, want, "{name}");
    }
    for args in [&["--threads", "4", "--no-batch"][..], &["--threads", "1"]] {
        for (name, policy) in served(args) {
            assert_eq!(policy, 0, "{name} with {args:?}");
        }
    }
}

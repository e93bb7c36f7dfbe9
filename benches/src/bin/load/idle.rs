//! P5: the server's resident memory while it holds many idle keep-alive connections.

use crate::clients::Client;
use crate::servers::start;

/// Opens `conns` HTTP/1.1 keep-alive connections to a fresh `kind` server, makes one request
/// on each (so the server holds a served connection, not just an accepted socket), then
/// reads the server's resident memory while they sit idle.
pub async fn rss_with_idle(kind: &str, conns: usize) -> u64 {
    raise_fd_limit();
    let (server, addr) = start(kind, 1).await;
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        let mut client = Client::connect(addr, false).await;
        if client.call().await.is_err() {
            break;
        }
        clients.push(client);
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let rss = server.rss_bytes();
    drop(clients);
    rss
}

/// Lets this process (and the servers it starts) hold as many sockets as the hard limit
/// allows.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

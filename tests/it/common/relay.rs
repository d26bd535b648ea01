//! A UDP relay between a test client and a server that can cut the server-to-client direction
//! on demand: a client whose path went dead, as the server sees it. Nothing the server sends
//! is acknowledged any more, yet nothing closes the connection either (the client's own
//! retransmissions still arrive), so only the server's own bounds can end what it holds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// A running relay; dropping it stops it.
pub struct UdpRelay {
    /// Where the client should send (the relay's client-facing socket).
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl UdpRelay {
    /// Relays datagrams between one client (whichever address last sent to [`Self::addr`])
    /// and `server`, both ways until cut.
    pub async fn start(server: SocketAddr) -> UdpRelay {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        back.connect(server).await.unwrap();
        let addr = front.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(relay(front, back, Arc::clone(&cut)));
        UdpRelay { addr, cut, task }
    }

    /// From now on nothing the server sends reaches the client.
    pub fn cut_server_to_client(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(front: UdpSocket, back: UdpSocket, cut: Arc<AtomicBool>) {
    let mut client = None;
    // One UDP payload at most each (the sockets do not coalesce datagrams).
    let mut up = vec![0u8; 65_536];
    let mut down = vec![0u8; 65_536];
    loop {
        tokio::select! {
            got = front.recv_from(&mut up) => {
                let Ok((n, from)) = got else { return };
                client = Some(from);
                let _ = back.send(&up[..n]).await;
            }
            got = back.recv(&mut down) => {
                let Ok(n) = got else { return };
                if let (Some(to), false) = (client, cut.load(Ordering::SeqCst)) {
                    let _ = front.send_to(&down[..n], to).await;
                }
            }
        }
    }
}

//! A live dashboard: a small HTTP server on loopback whose page draws [`LiveState`] and
//! redraws it twice a second.
//!
//! - `GET /` is the page: one self-contained HTML file (vanilla JavaScript and inline SVG, no
//!   external resources) with the block height, the elapsed time, stake and rank bars per
//!   neuron, the weight matrix `W` as a heatmap and the training loss curves.
//! - `GET /api/state` is the [`LiveState`] as JSON; the page polls it every 500 ms.
//!
//! The page has no authentication, so the server only listens on a loopback address and only
//! answers requests whose `Host` names a loopback address or `localhost` (a page on another
//! site cannot read the state by rebinding its DNS name to 127.0.0.1).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> bt_net::Result<()> {
//! use bt_net::{dashboard, live};
//!
//! let live = live::new_live();
//! let dash = dashboard::serve("127.0.0.1:0".parse().expect("an address"), live.clone()).await?;
//! println!("dashboard on {}", dash.url());
//! // The trainers and the ledger follower update the state; the page follows.
//! live.write().expect("live state lock").height = 7;
//! dash.stop().await;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::live::{Live, LiveState};
use crate::{Error, Result};

/// The page, served as is.
const PAGE: &str = include_str!("dashboard.html");

/// How long [`Dashboard::stop`] waits for open connections before it drops them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running dashboard. Dropping it shuts the server down too; [`Dashboard::stop`] also waits
/// until it has stopped.
#[derive(Debug)]
pub struct Dashboard {
    /// The address it listens on (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Dashboard {
    /// The page's URL, `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Stops accepting connections, lets requests in flight finish (up to a few seconds) and
    /// waits until the server has stopped.
    pub async fn stop(self) {
        let Dashboard {
            addr,
            shutdown,
            mut task,
        } = self;
        // The server may have stopped already, dropping the receiver: nothing to signal then.
        let _ = shutdown.send(());
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("dashboard on {addr}: {e}"),
            Ok(Err(e)) => tracing::warn!("dashboard on {addr}: server task failed: {e}"),
            Err(_) => {
                tracing::warn!("dashboard on {addr}: connections still open, dropping them");
                task.abort();
            }
        }
    }
}

/// Serves the dashboard of `live` on `addr`, which must be a loopback address (port 0 picks a
/// free port: read it from [`Dashboard::addr`]).
///
/// # Errors
/// [`Error::Config`] when `addr` is not a loopback address or cannot be listened on.
pub async fn serve(addr: SocketAddr, live: Live) -> Result<Dashboard> {
    if !addr.ip().is_loopback() {
        return Err(Error::Config(format!(
            "dashboard address {addr} is not a loopback address: the dashboard has no \
             authentication, so it only listens on 127.0.0.1 or [::1]"
        )));
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("dashboard: cannot listen on {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("dashboard: address of the listener on {addr}: {e}")))?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(page))
        .route("/api/state", axum::routing::get(state))
        .layer(axum::middleware::from_fn(local_host_only))
        .with_state(live);
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A sent signal or a dropped `Dashboard`: either way, stop.
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!("dashboard on http://{addr}/");
    Ok(Dashboard {
        addr,
        shutdown,
        task,
    })
}

/// `GET /`: the page.
async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

/// `GET /api/state`: the live state as JSON.
async fn state(State(live): State<Live>) -> Response {
    // A trainer that panicked while holding the lock leaves the last state it wrote: still
    // worth showing.
    let snapshot: LiveState = live.read().unwrap_or_else(|e| e.into_inner()).clone();
    match serde_json::to_string(&snapshot) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("serializing the live state: {e}"),
        )
            .into_response(),
    }
}

/// Refuses requests whose `Host` is neither a loopback address nor `localhost`.
async fn local_host_only(request: Request, next: Next) -> Response {
    if host_is_local(request.headers()) {
        next.run(request).await
    } else {
        (
            StatusCode::FORBIDDEN,
            "the dashboard only answers requests to 127.0.0.1, [::1] or localhost\n",
        )
            .into_response()
    }
}

/// True when the `Host` header is absent, `localhost` or a loopback address (with any port).
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[::1]:8080`
        match rest.split_once(']') {
            Some((ip, _)) => ip,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{LiveNeuron, new_live};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A response: status code, headers (lower-case names) and body.
    struct Got {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Got {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// `GET path` with the given `Host`, over a fresh connection that the server closes.
    async fn get_with_host(addr: SocketAddr, path: &str, host: &str) -> Got {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the dashboard");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("the response within 10 s")
            .expect("read the response");
        let raw = String::from_utf8(raw).expect("a UTF-8 response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a header/body separator");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status code");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Got {
            status,
            headers,
            body: body.to_string(),
        }
    }

    async fn get(addr: SocketAddr, path: &str) -> Got {
        get_with_host(addr, path, &addr.to_string()).await
    }

    fn three_neurons() -> LiveState {
        let neuron = |uid: usize, name: &str, role: &str| LiveNeuron {
            uid,
            name: name.to_string(),
            role: role.to_string(),
            stake_tao: 10.0 + uid as f64,
            rank: 0.25 * uid as f64,
            step: 40,
            loss: vec![(0, 4.5), (20, 3.25), (40, 2.5)],
            held_out: vec![(40, 2.75)],
        };
        LiveState {
            height: 42,
            elapsed_s: 12.5,
            steps: 100,
            neurons: vec![
                neuron(0, "honest0", "honest"),
                neuron(1, "noise", "noise"),
                neuron(2, "selfish", "selfish"),
            ],
            w: vec![
                vec![0.5, 0.25, 0.25],
                vec![1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
                vec![1.0, 0.0, 0.0],
            ],
            done: false,
        }
    }

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn api_state_is_the_state_as_json() {
        let live = new_live();
        *live.write().expect("live state lock") = three_neurons();
        let dash = serve(loopback(), live.clone()).await.expect("serve");
        assert_ne!(dash.addr.port(), 0, "port 0 is replaced by the real port");
        let got = get(dash.addr, "/api/state").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&got.body).expect("JSON body");
        let want = serde_json::to_value(three_neurons()).expect("state to JSON");
        assert_eq!(body, want);

        // A change shows on the next request.
        live.write().expect("live state lock").height = 43;
        let got = get(dash.addr, "/api/state").await;
        let body: serde_json::Value = serde_json::from_str(&got.body).expect("JSON body");
        assert_eq!(body["height"], 43);
        dash.stop().await;
    }

    #[tokio::test]
    async fn api_state_survives_a_poisoned_lock() {
        let live = new_live();
        *live.write().expect("live state lock") = three_neurons();
        let writer = live.clone();
        let poisoned = std::thread::spawn(move || {
            let _guard = writer.write().expect("live state lock");
            panic!("a trainer panics while holding the lock");
        })
        .join();
        assert!(poisoned.is_err() && live.is_poisoned());
        let dash = serve(loopback(), live).await.expect("serve");
        let got = get(dash.addr, "/api/state").await;
        assert_eq!(got.status, 200);
        let body: serde_json::Value = serde_json::from_str(&got.body).expect("JSON body");
        assert_eq!(body["height"], 42);
        dash.stop().await;
    }

    #[tokio::test]
    async fn root_is_the_page() {
        let dash = serve(loopback(), new_live()).await.expect("serve");
        let got = get(dash.addr, "/").await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(got.body.starts_with("<!doctype html>"));
        for id in ["height", "elapsed", "status", "stake", "rank", "w", "loss"] {
            assert!(
                got.body.contains(&format!("id=\"{id}\"")),
                "the page has an element with id {id}"
            );
        }
        for class in ["stake-bar", "rank-bar", "w-cell", "loss-curve"] {
            assert!(got.body.contains(class), "the page draws .{class}");
        }
        assert!(got.body.contains("/api/state"));
        // Self-contained: nothing is loaded from elsewhere.
        for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
            assert!(!got.body.contains(external), "the page loads {external}...");
        }
        dash.stop().await;
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let dash = serve(loopback(), new_live()).await.expect("serve");
        for path in ["/nope", "/api", "/api/state/x", "/index.html"] {
            assert_eq!(get(dash.addr, path).await.status, 404, "{path}");
        }
        dash.stop().await;
    }

    #[tokio::test]
    async fn foreign_hosts_are_refused() {
        let dash = serve(loopback(), new_live()).await.expect("serve");
        let port = dash.addr.port();
        for host in [
            format!("localhost:{port}"),
            format!("LOCALHOST:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            "localhost".to_string(),
        ] {
            assert_eq!(
                get_with_host(dash.addr, "/api/state", &host).await.status,
                200,
                "{host}"
            );
        }
        for host in [
            format!("evil.example:{port}"),
            "evil.example".to_string(),
            format!("192.168.1.2:{port}"),
            format!("[::ffff:10.0.0.1]:{port}"),
            "[::1".to_string(),
        ] {
            assert_eq!(
                get_with_host(dash.addr, "/", &host).await.status,
                403,
                "{host}"
            );
        }
        dash.stop().await;
    }

    #[tokio::test]
    async fn non_loopback_addresses_are_refused() {
        for addr in ["0.0.0.0:0", "[::]:0", "192.168.1.2:8080"] {
            let addr: SocketAddr = addr.parse().expect("an address");
            match serve(addr, new_live()).await {
                Err(Error::Config(message)) => {
                    assert!(message.contains("loopback"), "{message}");
                    assert!(message.contains(&addr.to_string()), "{message}");
                }
                other => panic!("{addr}: expected a Config error, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn stop_closes_the_port_and_drop_stops_too() {
        let dash = serve(loopback(), new_live()).await.expect("serve");
        let addr = dash.addr;
        dash.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());

        let dash = serve(loopback(), new_live()).await.expect("serve");
        let addr = dash.addr;
        drop(dash);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still listening after drop"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

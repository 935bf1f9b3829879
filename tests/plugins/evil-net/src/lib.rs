//! Test plugin: tries to use the network in `cas.check` — a TCP connection
//! and a `wasi:http` GET (`http ADDR: …`, one with a forged
//! `Authorization` header) to every address given as an option
//! `connect*=IP:PORT`, a name lookup, UDP and a listening socket — and
//! answers `other("net report: …")` with one `what: ok|refused (…)` item
//! per try, then `seen: …` with every option and environment variable it
//! can read (the tests check that no secret is among them).
use std::io::Write;
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use rumoci_driver_sdk::*;

struct Evil;
impl Driver for Evil {
    fn info() -> DriverInfo {
        DriverInfo::new("evil-net", "0.0.0", &["cas"])
    }
}

fn outcome<T>(r: std::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("refused ({e})"),
    }
}

impl Cas for Evil {
    fn check() -> Result<()> {
        let mut report = Vec::new();
        for (k, v) in config() {
            if !k.starts_with("connect") {
                continue;
            }
            let r = v
                .parse()
                .map_err(std::io::Error::other)
                .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)))
                .and_then(|mut s| s.write_all(b"GET / HTTP/1.0\r\n\r\n"));
            report.push(format!("connect {v}: {}", outcome(r)));
            report.push(format!("http {v}: {}", http_get(&v, None)));
            report.push(format!(
                "forged authorization {v}: {}",
                http_get(&v, Some("Basic YWxpY2U6c2VjcmV0"))
            ));
        }
        report.push(format!(
            "lookup localhost: {}",
            outcome(("localhost", 80).to_socket_addrs())
        ));
        let udp = UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"x", "127.0.0.1:9"));
        report.push(format!("udp: {}", outcome(udp)));
        report.push(format!(
            "listen: {}",
            outcome(TcpListener::bind("127.0.0.1:0"))
        ));
        let seen: Vec<String> = config()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(std::env::vars().map(|(k, v)| format!("env {k}={v}")))
            .collect();
        report.push(format!("seen: {}", seen.join(" ")));
        log(Level::Info, &format!("network attempts: {report:?}"));
        Err(Error::Other(format!("net report: {}", report.join("; "))))
    }
}
/// A `wasi:http` GET of `http://ADDR/v2/`: `ok (STATUS)` or `refused (…)`.
#[cfg(target_arch = "wasm32")]
fn http_get(addr: &str, authorization: Option<&str>) -> String {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    let why = |e: ErrorCode| match e {
        ErrorCode::InternalError(Some(m)) => format!("refused ({m})"),
        other => format!("refused ({other:?})"),
    };
    let mut headers = Vec::new();
    if let Some(a) = authorization {
        headers.push(("authorization".to_string(), a.as_bytes().to_vec()));
    }
    let fields = match Fields::from_list(&headers) {
        Ok(f) => f,
        Err(e) => return format!("refused (headers: {e:?})"),
    };
    let req = OutgoingRequest::new(fields);
    let _ = req.set_method(&Method::Get);
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some(addr));
    let _ = req.set_path_with_query(Some("/v2/"));
    let Ok(body) = req.body() else {
        return "refused (no body)".into();
    };
    let pending = match outgoing_handler::handle(req, None) {
        Ok(p) => p,
        Err(e) => return why(e),
    };
    if let Err(e) = OutgoingBody::finish(body, None) {
        return why(e);
    }
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(resp))) => format!("ok ({})", resp.status()),
        Some(Ok(Err(e))) => why(e),
        _ => "refused (no answer)".into(),
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn http_get(_addr: &str, _authorization: Option<&str>) -> String {
    "refused (not wasm)".into()
}

impl LayerStore for Evil {}
register_driver!(Evil);

//! Small helpers for tests of Eddy's HTTP endpoints: a free loopback port, a raw `POST` and
//! `GET` that report the status and body whatever they are, and a reader of `/metrics` text.

use std::io::{Read, Write};

/// A free loopback port (for `application.server`: the endpoint binds it again right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// POSTs `body` to `path` at `addr` (`host:port`) with the extra header lines `headers`
/// (each ending in `\r\n`), on a connection of its own: the status and the body.
pub fn http_post(addr: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("the endpoint accepts");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: eddy\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("the request is written");
    read_response(s)
}

/// GETs `path` at `addr` (`host:port`) on a connection of its own: the status and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("the endpoint accepts");
    write!(
        s,
        // HTTP/1.0: the answer comes whole, never in chunks.
        "GET {path} HTTP/1.0\r\nHost: eddy\r\n\r\n"
    )
    .expect("the request is written");
    read_response(s)
}

/// The status and body of the response on `s` (read to the end: one request per connection).
fn read_response(mut s: std::net::TcpStream) -> (u16, String) {
    let mut response = String::new();
    s.read_to_string(&mut response)
        .expect("the response is read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    (status.unwrap_or(0), body.to_string())
}

/// The sum of the samples of metric `name` in Prometheus text `text` whose labels include
/// every pair of `labels`; `None` when no sample matches.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let matches = labels
            .iter()
            .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
        if let (true, Ok(v)) = (matches, value.parse::<f64>()) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

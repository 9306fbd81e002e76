//! A running `serve` for the tests that drive it over HTTP: started from a
//! `Cli` with a conversion cache of its own, reached through a plain HTTP
//! client, and killed and reaped when dropped (on every way out of a test: a
//! failed assertion, a panic, a start that timed out).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ChildGuard, Cli};

/// How long a server may take to say it listens.
pub const START_LIMIT: Duration = Duration::from_secs(120);

pub struct Server {
    child: ChildGuard,
    url: String,
    agent: ureq::Agent,
    cache: tempfile::TempDir,
}

impl Server {
    /// Starts `cli`, a `serve --port 0 ...` command line, with a conversion
    /// cache of its own; returns once it listens.
    pub fn spawn(cli: Cli) -> Server {
        let cache = tempfile::tempdir().unwrap();
        let mut child = cli.cache(cache.path()).spawn();
        // Its first stdout line names the address; the rest is drained so the
        // server never writes into a closed or full pipe.
        let stdout = child.stdout.take().unwrap();
        let (first_line, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = first_line.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = listening.recv_timeout(START_LIMIT).unwrap_or_default();
        let Some(url) = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string)
        else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("serve did not start within {START_LIMIT:?}: {line}{err}");
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Server {
            child,
            url,
            agent,
            cache,
        }
    }

    pub fn cache(&self) -> &Path {
        self.cache.path()
    }

    /// POST a JSON body (given as text, so malformed bodies can be sent).
    pub fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value, Option<String>) {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut res = req.send(body).expect("the server answers");
        let status = res.status().as_u16();
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = res.body_mut().read_to_string().unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, json, retry)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, json, _) = self.post_raw(path, &body.to_string(), &[]);
        (status, json)
    }

    pub fn complete(&self, body: &Value) -> Value {
        let (status, json) = self.post("/v1/completions", body);
        assert_eq!(status, 200, "{json}");
        json
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut res = req.call().expect("the server answers");
        (res.status().as_u16(), res.body_mut().read_to_string().unwrap())
    }

    /// A streamed request's `data:` payloads, in order.
    pub fn stream(&self, path: &str, body: &Value) -> Vec<String> {
        let mut res = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        assert_eq!(
            res.headers().get("content-type").unwrap().to_str().unwrap(),
            "text/event-stream"
        );
        BufReader::new(res.body_mut().as_reader())
            .lines()
            .map(Result::unwrap)
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }

    /// A metric's value from /metrics (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics", &[]);
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }

    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; None after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

//! End-to-end: the real `permafrost` binary runs a localnet of separate processes, and the
//! HTTP API is driven against it; `permafrost demo` runs to completion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use permafrost_api::{
    process_running, ApiError, Client, CreateKeyRequest, Curve, DerivationPath, KeyRecord,
    LocalnetInfo,
};
use permafrost_node::PendingCommand;

const BIN: &str = env!("CARGO_BIN_EXE_permafrost");
const START_DEADLINE: Duration = Duration::from_secs(90);
const STOP_DEADLINE: Duration = Duration::from_secs(20);
const DEMO_DEADLINE: Duration = Duration::from_secs(120);

/// A child process that is killed if the test ends early.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn start(args: &[&str], logs: &Path, name: &str) -> Running {
        Self::start_with_env(args, &[], logs, name)
    }

    /// [`start`](Self::start) with environment variables `env` set (the localnet's processes
    /// inherit them).
    fn start_with_env(args: &[&str], env: &[(&str, &str)], logs: &Path, name: &str) -> Running {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("PERMAFROST_API")
            .env_remove("PERMAFROST_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for the process to exit, failing the test after `deadline`.
    fn wait(&mut self, deadline: Duration) -> ExitStatus {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "still running after {deadline:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SIGKILL: its children see their stdin close and stop on their own.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `permafrost localnet up` with `nodes` nodes in `logs/localnet` on a free API port;
/// returns the process and the localnet directory.
fn localnet_up(logs: &Path, nodes: usize) -> (Running, PathBuf) {
    localnet_up_with(logs, nodes, &[], &[], "localnet")
}

/// `permafrost localnet up` in `logs/localnet` with `extra` arguments and the environment
/// variables `env`, logging as `name`.
fn localnet_up_with(
    logs: &Path,
    nodes: usize,
    extra: &[&str],
    env: &[(&str, &str)],
    name: &str,
) -> (Running, PathBuf) {
    let dir = logs.join("localnet");
    let nodes = nodes.to_string();
    let mut args = vec![
        "localnet",
        "up",
        "--nodes",
        &nodes,
        "--dir",
        dir.to_str().unwrap(),
        "--api-port",
        "0",
    ];
    args.extend_from_slice(extra);
    let localnet = Running::start_with_env(&args, env, logs, name);
    (localnet, dir)
}

/// A localnet that is up, for one test: the `localnet up` process, its directory and
/// `localnet.json`, and an API client. Tests hold one at a time (the guard); dropping it kills
/// the localnet before its directory is removed.
struct UpLocalnet {
    localnet: Running,
    client: Client,
    info: LocalnetInfo,
    dir: PathBuf,
    tmp: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl UpLocalnet {
    /// Starts `nodes` nodes and waits until every one is connected; the client's requests
    /// time out after `timeout`. The guard is held across the start on purpose: it keeps
    /// the tests' networks apart.
    #[allow(clippy::await_holding_lock)]
    async fn start(nodes: usize, timeout: Duration) -> UpLocalnet {
        Self::start_with(nodes, timeout, &[], &[]).await
    }

    /// [`start`](Self::start) with `extra` arguments to `localnet up` and the environment
    /// variables `env` (for its processes too).
    #[allow(clippy::await_holding_lock)]
    async fn start_with(
        nodes: usize,
        timeout: Duration,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> UpLocalnet {
        let serial = ONE_NETWORK_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tmp = tempfile::tempdir().unwrap();
        let (mut localnet, dir) = localnet_up_with(tmp.path(), nodes, extra, env, "localnet");
        let info = await_info(&mut localnet, &dir).await;
        let client = Client::from_localnet(&info).unwrap().with_timeout(timeout);
        UpLocalnet {
            localnet,
            client,
            info,
            dir,
            tmp,
            _serial: serial,
        }
    }

    /// Where the processes' logs go.
    fn logs(&self) -> &Path {
        self.tmp.path()
    }
}

/// Starts node `name` of the localnet in `dir` again, as its own process.
fn restart_node(dir: &Path, logs: &Path, name: &str) -> Running {
    let config = dir.join(name).join("node.toml");
    Running::start(
        &["internal-node", "--config", config.to_str().unwrap()],
        logs,
        &format!("{name}-restarted"),
    )
}

/// Opens node `name`'s keystore, waiting for its stopped process to let go of it.
fn open_node_keystore(dir: &Path, name: &str) -> permafrost_keystore::KeyStore {
    let passphrase = std::fs::read_to_string(dir.join(name).join("passphrase")).unwrap();
    let until = Instant::now() + STOP_DEADLINE;
    loop {
        match permafrost_keystore::KeyStore::open(
            &dir.join(name).join("keystore"),
            passphrase.trim().as_bytes(),
        ) {
            Ok(store) => return store,
            Err(e) => {
                assert!(Instant::now() < until, "cannot open {name}'s keystore: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn http_status(error: &ApiError) -> Option<u16> {
    error.status()
}

/// `docs/openapi.json`, the API's OpenAPI document as committed.
const OPENAPI_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

/// The API's OpenAPI document: checks an answer against what it declares for the answer's
/// path, method and status.
struct ApiDocument {
    doc: serde_json::Value,
}

impl ApiDocument {
    fn parse(text: &str) -> ApiDocument {
        ApiDocument {
            doc: serde_json::from_str(text).unwrap(),
        }
    }

    /// The operation `method` (lowercase) on the path `template` (as the document spells it,
    /// `{key_id}` included).
    fn operation(&self, method: &str, template: &str) -> Result<&serde_json::Value, String> {
        self.doc["paths"][template]
            .get(method)
            .ok_or_else(|| format!("{method} {template} is not in the document"))
    }

    /// A validator for `schema`, one of the document's schemas: its `$ref`s resolve into the
    /// document's components.
    fn validator(&self, schema: &serde_json::Value) -> jsonschema::Validator {
        let mut root = schema.clone();
        root.as_object_mut()
            .unwrap_or_else(|| panic!("not a schema object: {schema}"))
            .insert("components".into(), self.doc["components"].clone());
        jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{schema}: {e}"))
    }

    /// Whether the request body schema of `method template` accepts `body`.
    fn accepts_request(&self, method: &str, template: &str, body: &serde_json::Value) -> bool {
        let operation = self.operation(method, template).unwrap();
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        self.validator(schema).is_valid(body)
    }

    /// Checks an answer of `method template` against the document: its status is one the
    /// operation declares, its content type is the one declared for that status, and its body
    /// is valid under that schema. Returns the body (JSON, or a JSON string for text).
    fn check(
        &self,
        method: &str,
        template: &str,
        status: u16,
        content_type: &str,
        body: &str,
    ) -> Result<serde_json::Value, String> {
        let operation = self.operation(method, template)?;
        let response = operation["responses"]
            .get(status.to_string())
            .ok_or_else(|| format!("{method} {template}: status {status} is not documented"))?;
        let media = response["content"].get(content_type).ok_or_else(|| {
            format!(
                "{method} {template} {status}: content type {content_type:?} is not documented \
                 ({})",
                response["content"]
            )
        })?;
        let value = if content_type == "application/json" {
            serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body}"))?
        } else {
            serde_json::Value::String(body.to_owned())
        };
        let errors: Vec<String> = self
            .validator(&media["schema"])
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(format!(
                "{method} {template} {status}: the body does not match the document: {errors:?}\n{body}"
            ))
        }
    }
}

/// A request body for [`CheckedApi::call`].
enum Body {
    None,
    /// JSON, sent with `Content-Type: application/json`.
    Json(serde_json::Value),
    /// Bytes, sent with the given `Content-Type` (or none).
    Raw(Option<&'static str>, Vec<u8>),
}

/// Raw requests to a localnet's API whose every answer is checked against the OpenAPI document
/// the coordinator serves, which is checked to be `docs/openapi.json` byte for byte.
struct CheckedApi {
    api: String,
    token: String,
    http: reqwest::Client,
    doc: ApiDocument,
}

impl CheckedApi {
    /// Fetches `GET /v1/openapi.json` (no token) and compares it with the committed file.
    async fn new(info: &LocalnetInfo) -> CheckedApi {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(90))
            .build()
            .unwrap();
        let answer = http
            .get(format!("{}/v1/openapi.json", info.api))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
        let content_type = answer.headers()[reqwest::header::CONTENT_TYPE].clone();
        let served = answer.text().await.unwrap();
        let committed = std::fs::read_to_string(OPENAPI_FILE).unwrap();
        assert!(
            served == committed,
            "the coordinator serves another document than docs/openapi.json: regenerate the file \
             with PERMAFROST_UPDATE_OPENAPI=1 cargo test -p permafrost-coordinator --lib openapi"
        );
        let doc = ApiDocument::parse(&served);
        doc.check(
            "get",
            "/v1/openapi.json",
            200,
            content_type.to_str().unwrap(),
            &served,
        )
        .unwrap();
        CheckedApi {
            api: info.api.clone(),
            token: info.token.clone(),
            http,
            doc,
        }
    }

    /// Sends `method` to the path `template` with `{key_id}` replaced by `key_id`, with the
    /// token when `token` is set; fails the test unless the answer is one the document
    /// declares. Returns the status and the body.
    async fn call(
        &self,
        method: reqwest::Method,
        template: &str,
        key_id: &str,
        token: bool,
        body: Body,
    ) -> (u16, serde_json::Value) {
        self.call_with_query(method, template, key_id, "", token, body)
            .await
    }

    /// [`CheckedApi::call`] with `query` (`?…`, or empty) after the path.
    async fn call_with_query(
        &self,
        method: reqwest::Method,
        template: &str,
        key_id: &str,
        query: &str,
        token: bool,
        body: Body,
    ) -> (u16, serde_json::Value) {
        let path = template.replace("{key_id}", key_id) + query;
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.api));
        if token {
            request = request.bearer_auth(&self.token);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(Some(content_type), bytes) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
            Body::Raw(None, bytes) => request.body(bytes),
        };
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = answer.text().await.unwrap();
        let method = method.as_str().to_ascii_lowercase();
        let value = self
            .doc
            .check(&method, template, status, &content_type, &text)
            .unwrap_or_else(|e| panic!("{e}"));
        (status, value)
    }
}

/// The two tests each start a network of processes on ports picked by the OS; run them one
/// at a time so one cannot be handed a port the other just picked but has not bound yet.
static ONE_NETWORK_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The check is not vacuous: against the committed document it refuses an undocumented status,
/// an undocumented content type, a missing field, uppercase hex, an unknown curve and an error
/// code of another status, and it accepts the documented answers.
#[test]
fn the_document_check_refuses_what_the_document_does_not_declare() {
    let doc = ApiDocument::parse(&std::fs::read_to_string(OPENAPI_FILE).unwrap());
    let json = "application/json";
    let record = serde_json::json!({
        "key_id": "k-1", "curve": "ed25519", "public_key": "ab".repeat(32),
        "network_id": "n", "threshold": 2, "nodes": ["node1", "node2"], "epoch": 0,
        "public_key_package_digest": "cd".repeat(32), "chain_code": "ef".repeat(32),
        "xpub": null, "rotation": null,
    });
    let good = record.to_string();
    let key = "/v1/keys/{key_id}";
    doc.check("get", key, 200, json, &good).unwrap();
    let mut rotated = record.clone();
    rotated["rotation"] = serde_json::json!({
        "every_secs": 3600, "last_ms": null, "next_ms": 1_790_000_000_000u64,
        "threshold": 2, "nodes": ["node1", "node2"],
    });
    doc.check("get", key, 200, json, &rotated.to_string())
        .unwrap();
    doc.check("get", "/v1/ready", 503, json, r#"{"ready":false}"#)
        .unwrap();
    let not_found = r#"{"error":{"code":"not_found","message":"no key"}}"#;
    doc.check("get", key, 404, json, not_found).unwrap();

    let refused = [
        doc.check("get", key, 409, json, &good),
        doc.check("get", "/v1/ready", 401, json, not_found),
        doc.check("delete", key, 200, json, &good),
        doc.check("get", key, 200, "text/plain", &good),
        doc.check("get", key, 400, json, not_found),
        doc.check(
            "get",
            key,
            404,
            json,
            r#"{"error":{"code":"bad_request","message":"no key"}}"#,
        ),
    ];
    for (i, outcome) in refused.iter().enumerate() {
        assert!(outcome.is_err(), "case {i}: {outcome:?}");
    }
    let mut missing = record.clone();
    missing.as_object_mut().unwrap().remove("epoch");
    let mut upper = record.clone();
    upper["public_key"] = "AB".repeat(32).into();
    let mut curve = record.clone();
    curve["curve"] = "p256".into();
    let mut no_rotation = record.clone();
    no_rotation.as_object_mut().unwrap().remove("rotation");
    let mut no_next = rotated.clone();
    no_next["rotation"]
        .as_object_mut()
        .unwrap()
        .remove("next_ms");
    for bad in [missing, upper, curve, no_rotation, no_next] {
        assert!(
            doc.check("get", key, 200, json, &bad.to_string()).is_err(),
            "{bad}"
        );
    }

    // Requests: unknown fields and unknown curves are refused, as the coordinator refuses them.
    let create = serde_json::json!({"curve": "secp256k1-tr", "threshold": 2});
    assert!(doc.accepts_request("post", "/v1/keys", &create));
    let mut unknown = create.clone();
    unknown["colour"] = "red".into();
    assert!(!doc.accepts_request("post", "/v1/keys", &unknown));
    assert!(!doc.accepts_request(
        "post",
        "/v1/keys",
        &serde_json::json!({"curve": "p256", "threshold": 2})
    ));
}

// Holding the guard across awaits is the point: the lock spans the whole test, and the only
// other holder is a synchronous test.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread")]
async fn localnet_up_serves_the_api_and_stops_on_sigterm() {
    let _serial = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let (mut localnet, dir) = localnet_up(tmp.path(), 3);

    // localnet.json appears once every node is connected.
    let info_path = dir.join("localnet.json");
    let until = Instant::now() + START_DEADLINE;
    let info: LocalnetInfo = loop {
        if let Ok(text) = std::fs::read_to_string(&info_path) {
            break serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = localnet.child.try_wait().unwrap() {
            panic!("localnet exited early ({status})\n{}", localnet.output());
        }
        assert!(
            Instant::now() < until,
            "no localnet.json after {START_DEADLINE:?}\n{}",
            localnet.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(info.api.starts_with("http://127.0.0.1:"), "{}", info.api);
    assert!(info.token.len() >= 16);
    assert_eq!(
        info.nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>(),
        ["node1", "node2", "node3"]
    );
    let mut pids: Vec<u32> = info.nodes.iter().map(|n| n.pid).collect();
    pids.push(info.coordinator.pid);
    for pid in &pids {
        assert!(process_running(*pid), "pid {pid} is not running");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&info_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "localnet.json holds the token: {mode:o}");
        let mode = std::fs::metadata(dir.join("node1/passphrase"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "passphrase file: {mode:o}");
    }

    let client = Client::from_localnet(&info)
        .unwrap()
        .with_timeout(Duration::from_secs(60));

    // Health: every node connected.
    let health = client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.nodes.len(), 3);
    assert!(health.nodes.iter().all(|n| n.connected), "{health:?}");
    for node in &info.nodes {
        assert!(health
            .nodes
            .iter()
            .any(|h| h.name == node.name && h.peer_id == node.peer_id));
    }

    // A 2-of-3 taproot key.
    let key = create_key(&client, Curve::Secp256k1Tr, 2).await;
    assert!(!key.key_id.is_empty());
    assert_eq!(key.curve, Curve::Secp256k1Tr);
    assert_eq!(key.threshold, 2);
    assert_eq!(key.epoch, 0);
    let mut committee = key.nodes.clone();
    committee.sort();
    assert_eq!(committee, ["node1", "node2", "node3"]);
    let public_key = hex::decode(&key.public_key).unwrap();
    assert_eq!(public_key.len(), 33);
    assert_eq!(client.key(&key.key_id).await.unwrap(), key);
    assert!(client.keys().await.unwrap().keys.contains(&key));

    // A signature any BIP-340 verifier accepts.
    let message = b"settlement batch 42";
    let signed = client.sign(&key.key_id, message).await.unwrap();
    assert_eq!(signed.public_key, key.public_key);
    assert_eq!(signed.epoch, 0);
    assert!(signed.signers.len() >= 2, "{:?}", signed.signers);
    assert!(signed.signers.iter().all(|s| committee.contains(s)));
    let signature = hex::decode(&signed.signature).unwrap();
    assert_eq!(signature.len(), 64);
    permafrost_verifiers::verify(Curve::Secp256k1Tr, &public_key, message, &signature).unwrap();
    assert!(
        permafrost_verifiers::verify(Curve::Secp256k1Tr, &public_key, b"other", &signature)
            .is_err()
    );
    // More signatures: every process's metrics count them (checked below).
    let mut answers = vec![signed];
    for i in 1..SIGNATURES {
        let message = format!("settlement batch {}", 42 + i);
        let signed = client.sign(&key.key_id, message.as_bytes()).await.unwrap();
        verify_response(
            &key,
            message.as_bytes(),
            &signed,
            &["node1", "node2", "node3"],
        );
        answers.push(signed);
    }

    // 401 without a token, and with a wrong one.
    let answer = reqwest::get(format!("{}/v1/health", info.api))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = Client::new(info.api.clone(), "not-the-right-token-at-all").unwrap();
    let error = wrong.keys().await.unwrap_err();
    assert_eq!(http_status(&error), Some(401), "{error}");

    // 404 for an unknown key.
    let error = client.key("k-no-such-key").await.unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");
    assert_eq!(error.code(), Some("not_found"));
    let error = client.sign("k-no-such-key", message).await.unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");

    // The CLI's own API commands against this localnet.
    let show = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "keys",
            "show",
            &key.key_id,
        ])
        .output()
        .unwrap();
    assert!(show.status.success(), "{show:?}");
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["public_key"], key.public_key.as_str());
    let missing = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "keys",
            "show",
            "k-no-such-key",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).starts_with("error: not_found: "),
        "{missing:?}"
    );

    check_metrics(&info, &client, &key, &answers).await;
    // After the metrics check: the document's checks sign, reshare and refuse more.
    answers_match_the_openapi_document(&info, &key).await;

    // SIGTERM stops the localnet and every process it started.
    let status = Command::new("kill")
        .args(["-TERM", &localnet.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = localnet.wait(STOP_DEADLINE);
    assert!(status.success(), "{status}\n{}", localnet.output());
    let until = Instant::now() + STOP_DEADLINE;
    while pids.iter().any(|pid| process_running(*pid)) {
        assert!(
            Instant::now() < until,
            "still running after the localnet stopped: {:?}",
            pids.iter()
                .filter(|pid| process_running(**pid))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!info_path.exists(), "localnet.json is left behind");
}

/// Real requests to a localnet with a 2-of-3 `key` on node1..node3: every answer, successes
/// and errors, is one the OpenAPI document declares for its path, method and status, with a
/// body valid under its schema. Reshares `key` to 3-of-3.
async fn answers_match_the_openapi_document(info: &LocalnetInfo, key: &KeyRecord) {
    use reqwest::Method;
    let api = CheckedApi::new(info).await;
    let id = key.key_id.as_str();

    let (status, health) = api
        .call(Method::GET, "/v1/health", "", true, Body::None)
        .await;
    assert_eq!(
        (status, health["nodes"].as_array().unwrap().len()),
        (200, 3)
    );
    let (status, ready) = api
        .call(Method::GET, "/v1/ready", "", false, Body::None)
        .await;
    assert_eq!(ready["ready"], status == 200, "{ready}");
    let (status, list) = api
        .call(Method::GET, "/v1/keys", "", true, Body::None)
        .await;
    assert_eq!(status, 200);
    assert!(list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["key_id"] == id));
    let (status, record) = api
        .call(Method::GET, "/v1/keys/{key_id}", id, true, Body::None)
        .await;
    assert_eq!((status, record), (200, serde_json::to_value(key).unwrap()));
    let derive = "/v1/keys/{key_id}/derive";
    let (status, child) = api
        .call_with_query(Method::GET, derive, id, "?path=m/0/1", true, Body::None)
        .await;
    assert_eq!((status, &child["path"]), (200, &"m/0/1".into()), "{child}");
    for bad in ["?path=m/0'", "", "?path=m/1&other=2"] {
        let (status, error) = api
            .call_with_query(Method::GET, derive, id, bad, true, Body::None)
            .await;
        assert_eq!(
            (status, &error["error"]["code"]),
            (400, &"bad_request".into()),
            "{bad}"
        );
    }
    let sign = serde_json::json!({ "message": permafrost_api::encode_hex(b"checked") });
    assert!(api
        .doc
        .accepts_request("post", "/v1/keys/{key_id}/sign", &sign));
    let (status, signed) = api
        .call(
            Method::POST,
            "/v1/keys/{key_id}/sign",
            id,
            true,
            Body::Json(sign),
        )
        .await;
    assert_eq!(
        (status, &signed["public_key"]),
        (200, &key.public_key.clone().into())
    );
    let reshare = serde_json::json!({"threshold": 3, "nodes": ["node1", "node2", "node3"]});
    assert!(api
        .doc
        .accepts_request("post", "/v1/keys/{key_id}/reshare", &reshare));
    let (status, reshared) = api
        .call(
            Method::POST,
            "/v1/keys/{key_id}/reshare",
            id,
            true,
            Body::Json(reshare),
        )
        .await;
    assert_eq!(
        (status, &reshared["epoch"], &reshared["threshold"]),
        (200, &1.into(), &3.into())
    );
    let (status, _) = api
        .call(Method::GET, "/metrics", "", true, Body::None)
        .await;
    assert_eq!(status, 200);

    // Errors, each with the code its status carries (the document says which).
    let code = |body: &serde_json::Value| body["error"]["code"].as_str().unwrap().to_owned();

    // The rotation policy of the (now 3-of-3) key: set, refused, cleared, cleared again.
    let rotation = "/v1/keys/{key_id}/rotation";
    let every = serde_json::json!({"every_secs": 3600});
    assert!(api.doc.accepts_request("put", rotation, &every));
    for refused in [
        serde_json::json!({"every_secs": 59}),
        serde_json::json!({"every_secs": 3600, "every": "1h"}),
        serde_json::json!({}),
    ] {
        assert!(
            !api.doc.accepts_request("put", rotation, &refused),
            "{refused}"
        );
    }
    let (status, set) = api
        .call(Method::PUT, rotation, id, true, Body::Json(every))
        .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (
            &set["rotation"]["every_secs"],
            &set["rotation"]["threshold"]
        ),
        (&3600.into(), &3.into()),
        "{set}"
    );
    assert_eq!(set["rotation"]["last_ms"], serde_json::Value::Null, "{set}");
    let (status, record) = api
        .call(Method::GET, "/v1/keys/{key_id}", id, true, Body::None)
        .await;
    assert_eq!((status, &record), (200, &set));
    let bad_rotations = [
        Body::Json(serde_json::json!({"every_secs": 59})),
        Body::Json(serde_json::json!({"every_secs": 3600, "every": "1h"})),
        Body::Json(serde_json::json!({"every_secs": 3600, "approvals": [{
            "public_key": "11", "request_id": "22".repeat(16),
            "timestamp_ms": 1, "signature": "33".repeat(64)}]})),
        Body::Raw(Some("application/json"), b"{\"every_secs\":".to_vec()),
    ];
    for body in bad_rotations {
        let (status, body) = api.call(Method::PUT, rotation, id, true, body).await;
        assert_eq!((status, code(&body)), (400, "bad_request".into()), "{body}");
    }
    let (status, record) = api
        .call(Method::GET, "/v1/keys/{key_id}", id, true, Body::None)
        .await;
    assert_eq!(
        (status, &record),
        (200, &set),
        "a refused PUT changed the policy"
    );
    for _ in 0..2 {
        let (status, cleared) = api
            .call(Method::DELETE, rotation, id, true, Body::None)
            .await;
        assert_eq!(
            (status, &cleared["rotation"]),
            (200, &serde_json::Value::Null),
            "{cleared}"
        );
        assert_eq!(cleared["epoch"], set["epoch"]);
    }
    let (status, body) = api
        .call(Method::DELETE, rotation, id, false, Body::None)
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized".into()));
    let (status, body) = api
        .call(Method::GET, "/v1/health", "", false, Body::None)
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized".into()));
    let create = serde_json::json!({"curve": "ed25519", "threshold": 2});
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/keys",
            "",
            false,
            Body::Json(create.clone()),
        )
        .await;
    assert_eq!((status, code(&body)), (401, "unauthorized".into()));
    for (method, path) in [
        (Method::GET, "/v1/keys/{key_id}"),
        (Method::POST, "/v1/keys/{key_id}/sign"),
        (Method::POST, "/v1/keys/{key_id}/reshare"),
        (Method::PUT, "/v1/keys/{key_id}/rotation"),
        (Method::DELETE, "/v1/keys/{key_id}/rotation"),
    ] {
        // A body the route refuses, where it takes one: the unknown key is found first.
        let body = match method {
            Method::POST | Method::PUT => Body::Json(create.clone()),
            _ => Body::None,
        };
        let (status, body) = api
            .call(method.clone(), path, "k-no-such-key", true, body)
            .await;
        assert_eq!(
            (status, code(&body)),
            (404, "not_found".into()),
            "{method} {path}"
        );
    }
    let bad_requests = [
        Body::Raw(Some("application/json"), b"{\"curve\":".to_vec()),
        Body::Raw(None, create.to_string().into_bytes()),
        Body::Json(serde_json::json!({"curve": "ed25519", "threshold": 2, "colour": "red"})),
        Body::Json(serde_json::json!({"curve": "p256", "threshold": 2})),
        Body::Json(serde_json::json!({"curve": "ed25519", "threshold": 4})),
    ];
    for body in bad_requests {
        let (status, body) = api.call(Method::POST, "/v1/keys", "", true, body).await;
        assert_eq!((status, code(&body)), (400, "bad_request".into()), "{body}");
    }
    let taken = serde_json::json!({"curve": "ed25519", "threshold": 2, "key_id": id});
    let (status, body) = api
        .call(Method::POST, "/v1/keys", "", true, Body::Json(taken))
        .await;
    assert_eq!((status, code(&body)), (409, "conflict".into()));
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/keys/{key_id}/sign",
            id,
            true,
            Body::Json(serde_json::json!({"message": "zz"})),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request".into()));
    let huge = serde_json::json!({"message": "00".repeat(600 * 1024)});
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/keys/{key_id}/sign",
            id,
            true,
            Body::Json(huge),
        )
        .await;
    assert_eq!((status, code(&body)), (413, "payload_too_large".into()));
}

#[test]
fn demo_runs_every_curve_and_exits_zero() {
    let _serial = ONE_NETWORK_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut demo = Running::start(&["demo"], tmp.path(), "demo");
    let status = demo.wait(DEMO_DEADLINE);
    let output = demo.output();
    assert!(status.success(), "{status}\n{output}");
    let stdout = std::fs::read_to_string(&demo.stdout).unwrap();
    for curve in ["ed25519", "secp256k1", "secp256k1-tr"] {
        let row = stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(curve))
            .unwrap_or_else(|| panic!("no table row for {curve}\n{output}"));
        assert!(row.contains("yes 6/6"), "{row}\n{output}");
    }
}

/// Signatures made by `localnet_up_serves_the_api_and_stops_on_sigterm` before it reads the
/// metrics.
const SIGNATURES: usize = 5;

/// Scrapes `{base}/metrics` (with `token`, if given) and parses it with a Prometheus text
/// parser.
async fn scrape(base: &str, token: Option<&str>) -> prometheus_parse::Scrape {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200, "{base}/metrics");
    let text = answer.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap()
}

/// The samples of metric `name` whose labels include `labels`.
fn samples<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
    scrape.samples.iter().filter(move |s| {
        s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

/// The value of the one sample of `name` with `labels` (a counter, a gauge; the parser reads
/// an OpenMetrics `_total` sample as untyped).
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples(scrape, name, labels).collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    number(found[0])
}

/// The value of a counter, gauge or untyped sample.
fn number(sample: &prometheus_parse::Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!(
            "{} {:?} is not a number: {other:?}",
            sample.metric, sample.labels
        ),
    }
}

/// The number of observations of histogram `name` with `labels` (its `+Inf` bucket).
fn observations(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<_> = samples(scrape, name, labels).collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    let prometheus_parse::Value::Histogram(buckets) = &found[0].value else {
        panic!("{name} is not a histogram: {:?}", found[0]);
    };
    buckets
        .iter()
        .find(|b| b.less_than == f64::INFINITY)
        .map(|b| b.count)
        .unwrap_or_else(|| panic!("{name} has no +Inf bucket: {buckets:?}"))
}

/// Every metric name a scrape holds, as queries name them (`x_total`, `x`, `x_bucket`, …).
fn exported_names(scrape: &prometheus_parse::Scrape) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for sample in &scrape.samples {
        if let prometheus_parse::Value::Histogram(_) = sample.value {
            names.insert(format!("{}_bucket", sample.metric));
        }
        names.insert(sample.metric.clone());
    }
    names
}

/// The signing requests node `name` refused since its process started, by its metrics.
async fn signing_refusals(info: &LocalnetInfo, name: &str) -> u64 {
    let urls = info
        .metrics
        .as_ref()
        .expect("localnet.json lists the metrics listeners");
    let scrape = scrape(&urls.nodes[name], None).await;
    let total: f64 = samples(&scrape, "permafrost_node_signing_refused_total", &[])
        .map(number)
        .sum();
    total as u64
}

/// After `answers` (every signature of `key` so far, all of them successful), the coordinator
/// and every signer say so in their metrics, scraped from the addresses in `localnet.json`;
/// and every metric the Grafana dashboard queries is one of theirs.
async fn check_metrics(
    info: &LocalnetInfo,
    client: &Client,
    key: &KeyRecord,
    answers: &[permafrost_api::SignResponse],
) {
    let n = answers.len() as f64;
    let curve = key.curve.as_str();
    let ok = [("curve", curve), ("outcome", "ok")];
    let urls = info
        .metrics
        .as_ref()
        .expect("localnet.json lists the metrics listeners");
    assert_eq!(
        urls.nodes.keys().collect::<Vec<_>>(),
        ["node1", "node2", "node3"]
    );

    // Every node answers its probes (so the health gauges below read 1).
    for node in urls.nodes.keys() {
        until_healthy_is(client, node, true).await;
    }
    // The coordinator: its own listener and the API's /metrics (token) serve one registry.
    let coordinator = scrape(&urls.coordinator, None).await;
    let through_api = scrape(&info.api, Some(&info.token)).await;
    for scrape in [&coordinator, &through_api] {
        assert_eq!(
            value(scrape, "permafrost_coordinator_signatures_total", &ok),
            n
        );
        assert_eq!(
            observations(
                scrape,
                "permafrost_coordinator_signature_duration_seconds",
                &ok
            ),
            n
        );
    }
    for outcome in ["failed", "refused"] {
        let labels = [("curve", curve), ("outcome", outcome)];
        assert_eq!(
            value(
                &coordinator,
                "permafrost_coordinator_signatures_total",
                &labels
            ),
            0.0
        );
    }
    assert_eq!(
        value(&coordinator, "permafrost_coordinator_dkgs_total", &ok),
        1.0
    );
    assert_eq!(
        observations(
            &coordinator,
            "permafrost_coordinator_dkg_duration_seconds",
            &ok
        ),
        1.0
    );
    assert_eq!(value(&coordinator, "permafrost_coordinator_keys", &[]), 1.0);
    // The first t signers of every signature were asked, in one round or in two.
    let asks: f64 = ["one_round", "two_round"]
        .iter()
        .map(|mode| {
            value(
                &coordinator,
                "permafrost_coordinator_signer_asks_total",
                &[("mode", mode)],
            )
        })
        .sum();
    assert_eq!(asks, n * f64::from(key.threshold));
    // Each signature was aggregated once, on the engine's loop or on the workers.
    let aggregations: f64 = ["loop", "workers"]
        .iter()
        .map(|on| {
            value(
                &coordinator,
                "permafrost_coordinator_aggregations_total",
                &[("on", on)],
            )
        })
        .sum();
    assert_eq!(aggregations, n);
    // Two requests without a good token, three for a key that does not exist.
    let refused = |reason| {
        value(
            &coordinator,
            "permafrost_coordinator_api_refused_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refused("unauthorized"), 2.0);
    assert_eq!(refused("not_found"), 3.0);
    for node in urls.nodes.keys() {
        let node = [("node", node.as_str())];
        assert_eq!(
            value(&coordinator, "permafrost_coordinator_node_healthy", &node),
            1.0
        );
        let rtt = value(
            &coordinator,
            "permafrost_coordinator_node_probe_round_trip_seconds",
            &node,
        );
        assert!(rtt > 0.0 && rtt < 3.0, "{rtt}");
        assert!(
            value(
                &coordinator,
                "permafrost_coordinator_node_probe_age_seconds",
                &node
            ) < 3.0
        );
        assert!(
            value(
                &coordinator,
                "permafrost_coordinator_commitment_pool_depth",
                &node
            ) >= 0.0
        );
        let culprits = [node[0], ("session", "sign")];
        assert_eq!(
            value(
                &coordinator,
                "permafrost_coordinator_culprits_total",
                &culprits
            ),
            0.0
        );
        assert_eq!(
            value(
                &coordinator,
                "permafrost_peer_connected",
                &[("peer", node[0].1)]
            ),
            1.0
        );
    }

    // Each signer: as many shares as the answers name it among the signers.
    let mut names = exported_names(&coordinator);
    let mut shares = 0.0;
    for (name, url) in &urls.nodes {
        let signed = answers
            .iter()
            .filter(|a| a.signers.iter().any(|s| s == name))
            .count() as f64;
        let node = scrape(url, None).await;
        let curve = [("curve", curve)];
        assert_eq!(
            value(&node, "permafrost_node_shares_total", &curve),
            signed,
            "{name}"
        );
        assert_eq!(
            observations(&node, "permafrost_node_share_duration_seconds", &curve),
            signed,
            "{name}"
        );
        assert!(
            value(
                &node,
                "permafrost_node_client_requests_admitted_total",
                &curve
            ) >= signed
        );
        assert_eq!(
            value(&node, "permafrost_node_dkgs_total", &[("outcome", "ok")]),
            1.0
        );
        assert_eq!(value(&node, "permafrost_node_signers", &[]), 1.0);
        assert!(
            observations(
                &node,
                "permafrost_node_keystore_commit_duration_seconds",
                &[]
            ) >= 1.0
        );
        assert_eq!(
            value(&node, "permafrost_node_store_failures_total", &[]),
            0.0
        );
        // A gauge for every peer (the other nodes and the coordinator), each 1: every node
        // dials every peer at start, and the gauges are read once a second.
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let peers: Vec<f64> =
                samples(&scrape(url, None).await, "permafrost_peer_connected", &[])
                    .map(|s| match s.value {
                        prometheus_parse::Value::Gauge(v) => v,
                        ref other => panic!("{other:?}"),
                    })
                    .collect();
            assert_eq!(peers.len(), urls.nodes.len(), "{name}: {peers:?}");
            if peers.iter().all(|v| *v == 1.0) {
                break;
            }
            assert!(Instant::now() < until, "{name}: {peers:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        shares += signed;
        names.extend(exported_names(&node));
    }
    assert_eq!(
        shares,
        n * f64::from(key.threshold),
        "t shares per signature"
    );

    // The dashboard queries only what the processes export.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/grafana/permafrost.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut queried = std::collections::BTreeSet::new();
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("permafrost_") {
            let end = rest[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(rest.len(), |e| at + e);
            queried.insert(rest[at..end].to_owned());
            rest = &rest[end..];
        }
    }
    let unknown: Vec<_> = queried.difference(&names).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which no process exports"
    );
}

/// Every `expr` string in a Grafana dashboard.
fn collect_exprs(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(expr) if k == "expr" => into.push(expr.clone()),
                    other => collect_exprs(other, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, into)),
        _ => {}
    }
}

/// Waits for `DIR/localnet.json` and reads it.
async fn await_info(localnet: &mut Running, dir: &Path) -> LocalnetInfo {
    let info_path = dir.join("localnet.json");
    let until = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&info_path) {
            return serde_json::from_str(&text).unwrap();
        }
        if let Some(status) = localnet.child.try_wait().unwrap() {
            panic!("localnet exited early ({status})\n{}", localnet.output());
        }
        assert!(
            Instant::now() < until,
            "no localnet.json after {START_DEADLINE:?}\n{}",
            localnet.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops `pid` with SIGTERM and waits until it is gone.
fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + STOP_DEADLINE;
    while process_running(pid) {
        assert!(Instant::now() < until, "pid {pid} survived SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls the health until `node`'s `healthy` is `want`; returns how long that took.
async fn until_healthy_is(client: &Client, node: &str, want: bool) -> Duration {
    let started = Instant::now();
    loop {
        let health = client.health().await.unwrap();
        let found = health.nodes.iter().find(|n| n.name == node).unwrap();
        if found.healthy == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{node} still healthy={} after 15 s: {found:?}",
            found.healthy
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET /v1/ready` (no token) until `ready` is `want` (the verdict is cached for a probe
/// interval); checks the status code goes with it, and each answer against the document.
async fn until_ready_is(api: &CheckedApi, want: bool) {
    let started = Instant::now();
    loop {
        let (status, body) = api
            .call(reqwest::Method::GET, "/v1/ready", "", false, Body::None)
            .await;
        let ready = body["ready"].as_bool().unwrap();
        assert_eq!(status, if ready { 200 } else { 503 }, "{body}");
        if ready == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still ready={ready} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + STOP_DEADLINE;
    while process_running(pid) {
        assert!(Instant::now() < until, "pid {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the coordinator reports `name` connected (or not, per `connected`).
async fn await_connected(client: &Client, name: &str, connected: bool) {
    let began = Instant::now();
    let until = began + START_DEADLINE;
    loop {
        // Measured before asking: a probe counts only if it was answered after `began`.
        let since = began.elapsed().as_millis();
        if let Ok(health) = client.health().await {
            // Connected means a connection that answered a probe since the wait began: right
            // after a restart the coordinator can still show the dead process's connection,
            // and a DKG or reshare message written there is lost (OPERATIONS.md §9).
            let fresh = |n: &permafrost_api::NodeHealth| {
                n.healthy
                    && n.last_probe_age_ms
                        .is_some_and(|age| u128::from(age) < since)
            };
            if health
                .nodes
                .iter()
                .any(|n| n.name == name && n.connected == connected && (!connected || fresh(n)))
            {
                return;
            }
        }
        if Instant::now() >= until {
            let health = client.health().await;
            panic!(
                "{name} never became connected={connected} (a fresh probe answered): {health:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs `message` (approved by the coordinator's gateway key) and checks the answer.
/// Creates a key of `curve` and `threshold` on every node (the gateway operator key approves).
async fn create_key(client: &Client, curve: Curve, threshold: u16) -> KeyRecord {
    client
        .create_key(&CreateKeyRequest {
            curve,
            threshold,
            nodes: None,
            key_id: None,
            approvals: Vec::new(),
        })
        .await
        .unwrap()
}

async fn sign_and_verify(
    client: &Client,
    key: &permafrost_api::KeyRecord,
    message: &[u8],
    committee: &[&str],
) {
    let signed = client.sign(&key.key_id, message).await.unwrap();
    verify_response(key, message, &signed, committee);
}

/// Checks a signing answer with the independent verifier of the key's curve: same public key,
/// the expected epoch, signers from `committee`.
fn verify_response(
    key: &permafrost_api::KeyRecord,
    message: &[u8],
    signed: &permafrost_api::SignResponse,
    committee: &[&str],
) {
    assert_eq!(signed.public_key, key.public_key);
    assert_eq!(signed.epoch, key.epoch);
    assert!(signed.signers.len() >= usize::from(key.threshold));
    assert!(signed.culprits.is_empty(), "honest nodes named: {signed:?}");
    assert!(
        signed
            .signers
            .iter()
            .all(|s| committee.contains(&s.as_str())),
        "{:?} not all in {committee:?}",
        signed.signers
    );
    let public_key = hex::decode(&key.public_key).unwrap();
    let signature = hex::decode(&signed.signature).unwrap();
    permafrost_verifiers::verify(key.curve, &public_key, message, &signature).unwrap();
}

/// Six real processes: a key on node1..node5 with t=3 is reshared with the CLI to
/// node1..node4 + node6 with t=4 (node5 evicted); node5 is then killed and a refresh of the new
/// committee completes; then node2 is killed with SIGKILL in the middle of a reshare and
/// restarted: afterwards the key signs, node2 takes part in a further reshare (so it holds
/// exactly the current epoch), and its keystore holds one ACTIVE share, nothing PENDING, and no
/// open reshare.
#[tokio::test(flavor = "multi_thread")]
async fn reshare_on_localnet_evicts_a_node_and_survives_sigkill() {
    let net = UpLocalnet::start(6, Duration::from_secs(90)).await;
    let (client, dir, info) = (&net.client, &net.dir, &net.info);
    let pid_of = |name: &str| info.nodes.iter().find(|n| n.name == name).unwrap().pid;

    let first = ["node1", "node2", "node3", "node4", "node5"];
    let key = client
        .create_key(&CreateKeyRequest {
            curve: Curve::Secp256k1Tr,
            threshold: 3,
            nodes: Some(first.iter().map(|s| s.to_string()).collect()),
            key_id: None,
            approvals: Vec::new(),
        })
        .await
        .unwrap();
    sign_and_verify(client, &key, b"before the reshare", &first).await;

    // The CLI's reshare: evict node5, bring in node6, raise t to 4.
    let second = ["node1", "node2", "node3", "node4", "node6"];
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "reshare",
            "--key",
            &key.key_id,
            "--threshold",
            "4",
            "--nodes",
            &second.join(","),
        ])
        .output()
        .unwrap();
    println!(
        "reshare (3,5)->(4,5) through the CLI: {:?}",
        started.elapsed()
    );
    assert!(out.status.success(), "{out:?}\n{}", net.localnet.output());
    let reshared: permafrost_api::KeyRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reshared.public_key, key.public_key);
    assert_eq!((reshared.epoch, reshared.threshold), (1, 4));
    let mut nodes = reshared.nodes.clone();
    nodes.sort();
    assert_eq!(nodes, second);
    sign_and_verify(client, &reshared, b"after the reshare", &second).await;

    // node5 dies; the localnet keeps running, and a refresh of the new committee completes.
    sigkill(pid_of("node5"));
    await_connected(client, "node5", false).await;
    // A reshare that needs node5 back cannot dial its open to it: it ends at once, naming
    // node5, and changes nothing.
    let started = Instant::now();
    let error = client
        .reshare(
            &key.key_id,
            &permafrost_api::ReshareRequest {
                threshold: 4,
                nodes: first.iter().map(|s| s.to_string()).collect(),
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    println!("reshare to a committee with a dead node: {error} after {took:?}");
    assert_eq!(http_status(&error), Some(503), "{error}");
    assert!(error.to_string().contains("node5"), "{error}");
    assert!(took < Duration::from_secs(5), "503 after {took:?}");
    assert_eq!(client.key(&key.key_id).await.unwrap().epoch, 1);
    let refresh = permafrost_api::ReshareRequest {
        threshold: 4,
        nodes: second.iter().map(|s| s.to_string()).collect(),
        approvals: Vec::new(),
    };
    let refreshed = client.reshare(&key.key_id, &refresh).await.unwrap();
    assert_eq!(refreshed.public_key, key.public_key);
    assert_eq!(refreshed.epoch, 2);
    sign_and_verify(client, &refreshed, b"after the refresh", &second).await;

    // SIGKILL node2 in the middle of another refresh, then restart it.
    let during = {
        let client = client.clone();
        let (key_id, refresh) = (key.key_id.clone(), refresh.clone());
        tokio::spawn(async move { client.reshare(&key_id, &refresh).await })
    };
    tokio::time::sleep(Duration::from_millis(15)).await;
    sigkill(pid_of("node2"));
    let restarted = restart_node(dir, net.logs(), "node2");
    await_connected(client, "node2", true).await;
    let outcome = during.await.unwrap();
    println!("reshare interrupted by SIGKILL: {outcome:?}");
    let current = client.key(&key.key_id).await.unwrap();
    assert_eq!(current.public_key, key.public_key);
    match &outcome {
        Ok(record) => assert_eq!((record.epoch, current.epoch), (3, 3)),
        Err(_) => assert_eq!(current.epoch, 2),
    }
    sign_and_verify(client, &current, b"after the crash", &second).await;
    // A reshare that failed after members stored their new shares leaves those shares
    // pending (no certificate exists, and an unsigned abort deletes nothing): an operator
    // discards them, each node stopped, before the key can be reshared again.
    let mut restarted = vec![restarted];
    if outcome.is_err() {
        drop(restarted.pop());
        let next = current.epoch + 1;
        for name in second.iter().filter(|n| **n != "node2") {
            terminate(pid_of(name));
        }
        let mut discarded = 0;
        for name in second {
            drop(open_node_keystore(dir, name));
            let config = dir.join(name).join("node.toml");
            let mut out = Vec::new();
            permafrost_node::run_pending(
                &PendingCommand::Show {
                    config: config.clone(),
                },
                &mut out,
                &mut std::io::sink(),
            )
            .unwrap();
            if String::from_utf8_lossy(&out).contains(&format!("epoch {next}: pending")) {
                permafrost_node::run_pending(
                    &PendingCommand::Discard {
                        config,
                        key: key.key_id.clone(),
                        epoch: next,
                        yes: true,
                    },
                    &mut std::io::sink(),
                    &mut std::io::sink(),
                )
                .unwrap();
                discarded += 1;
            }
            restarted.push(restart_node(dir, net.logs(), name));
        }
        println!("pending shares discarded by the operator: {discarded}");
        for name in second {
            await_connected(client, name, true).await;
        }
    }
    // Every new member must deal and confirm: node2 can only if it holds exactly the epoch
    // the coordinator records.
    let after = client.reshare(&key.key_id, &refresh).await.unwrap();
    assert_eq!(after.epoch, current.epoch + 1);
    assert_eq!(after.public_key, key.public_key);
    sign_and_verify(client, &after, b"after the crash and a refresh", &second).await;

    // node2's disk: one ACTIVE share of the key at the current epoch, nothing else.
    drop(restarted);
    let store = open_node_keystore(dir, "node2");
    let shares: Vec<_> = store
        .shares()
        .unwrap()
        .into_iter()
        .filter(|m| m.key_id == key.key_id)
        .map(|m| (m.epoch, m.state))
        .collect();
    assert_eq!(
        shares,
        vec![(after.epoch, permafrost_keystore::ShareState::Active)]
    );
    assert!(store.reshares().unwrap().is_empty());
}

/// Real processes, ROAST: two of five nodes are killed with SIGKILL during a stream of
/// signing requests and every request still completes and verifies; with a third killed, a
/// request fails quickly with 503 naming the missing nodes; restarted, they sign again.
#[tokio::test(flavor = "multi_thread")]
async fn signing_survives_two_killed_nodes_and_fails_fast_without_a_threshold() {
    let net = UpLocalnet::start(5, Duration::from_secs(60)).await;
    let (client, dir, info) = (&net.client, &net.dir, &net.info);
    let pid_of = |name: &str| info.nodes.iter().find(|n| n.name == name).unwrap().pid;
    let all = ["node1", "node2", "node3", "node4", "node5"];
    let key = create_key(client, Curve::Secp256k1Tr, 3).await;

    // A stream of requests; node4 and node5 die along the way.
    let stream = {
        let client = client.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            for i in 0..40 {
                let message = format!("stream {i}");
                let started = Instant::now();
                sign_and_verify(&client, &key, message.as_bytes(), &all).await;
                slowest = slowest.max(started.elapsed());
            }
            slowest
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    sigkill(pid_of("node4"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    sigkill(pid_of("node5"));
    let slowest = stream.await.unwrap();
    println!("40 signatures with two nodes killed mid-stream; slowest {slowest:?}");

    // A third one down: fewer than t reachable. The requests to the dead nodes fail to be
    // delivered, which ROAST counts as refusals: 503 at once, long before the 10 s deadline.
    sigkill(pid_of("node3"));
    await_connected(client, "node3", false).await;
    let started = Instant::now();
    let error = client.sign(&key.key_id, b"two left").await.unwrap_err();
    let took = started.elapsed();
    println!("with 2 of 5 up: {error} after {took:?}");
    assert_eq!(http_status(&error), Some(503), "{error}");
    assert!(took < Duration::from_secs(3), "503 after {took:?}");
    for name in ["node3", "node4", "node5"] {
        assert!(
            error.to_string().contains(name),
            "{name} not named: {error}"
        );
    }

    // Restarted, they sign again.
    let mut restarted = Vec::new();
    for name in ["node3", "node4", "node5"] {
        restarted.push(restart_node(dir, net.logs(), name));
    }
    for name in ["node3", "node4", "node5"] {
        await_connected(client, name, true).await;
    }
    sign_and_verify(client, &key, b"all back", &all).await;
}

/// Real processes, client authorization. The coordinator forwards whatever a request carries
/// (it judges no approval), so each refusal here is the nodes' own: an unknown client key, a
/// message other than the approved one, a replayed approval (also after the nodes restart),
/// a stale one, and one made for another network id are each 403 `client_not_authorized`, and
/// nothing is signed; an approval from the listed client key signs, through the API and
/// through the CLI (which refuses to approve for a network id other than the one pinned), and
/// so does the gateway key for requests that carry none. Each node's audit log records every decision.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_sign_only_what_an_accepted_client_approved() {
    use permafrost_api::{ClientAuthorization, ClientKey, SignRequest};
    const FLOOD: usize = 80;

    let net = UpLocalnet::start(3, Duration::from_secs(60)).await;
    let (client, dir, info) = (&net.client, &net.dir, &net.info);
    let all = ["node1", "node2", "node3"];
    let key = create_key(client, Curve::Ed25519, 2).await;
    assert!(key.network_id.starts_with("localnet-"), "{key:?}");
    let accepted = ClientKey::load(&dir.join("client.key")).unwrap();
    let root = DerivationPath::ROOT;
    let body = |auth: &permafrost_wire::ClientAuthorization, message: &[u8]| SignRequest {
        message: permafrost_api::encode_hex(message),
        path: None,
        client: Some(ClientAuthorization::from_wire(auth)),
    };
    let refused = |outcome: Result<permafrost_api::SignResponse, ApiError>, why: &str| match outcome
    {
        Err(ApiError::Http {
            status,
            code,
            message,
        }) => {
            assert_eq!(
                (status, code.as_str()),
                (403, "client_not_authorized"),
                "{message}"
            );
            assert!(message.contains(why), "{message:?} should say {why:?}");
        }
        other => panic!("expected 403 saying {why:?}, got {other:?}"),
    };

    // The accepted client signs.
    let approved = accepted
        .authorize_key(&key, &root, b"pay 10 to alice")
        .unwrap();
    let signed = client
        .sign_request(&key.key_id, &body(&approved, b"pay 10 to alice"))
        .await
        .unwrap();
    verify_response(&key, b"pay 10 to alice", &signed, &all);

    // The same approval again: a replay.
    refused(
        client
            .sign_request(&key.key_id, &body(&approved, b"pay 10 to alice"))
            .await,
        "already used in session",
    );
    // The approval with another message: tampered.
    let fresh = accepted
        .authorize_key(&key, &root, b"pay 10 to alice")
        .unwrap();
    refused(
        client
            .sign_request(&key.key_id, &body(&fresh, b"pay 10000 to mallory"))
            .await,
        "does not verify",
    );
    // A key no node lists.
    let stranger = ClientKey::generate();
    refused(
        client.sign_as(&stranger, &key.key_id, b"m").await,
        "is not accepted",
    );
    // An approval ten minutes old.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stale = key
        .with_approval_target(&root, |target| {
            accepted.authorize_at(target, b"old", [9; 16], now_ms - 600_000)
        })
        .unwrap();
    refused(
        client
            .sign_request(&key.key_id, &body(&stale, b"old"))
            .await,
        "from this node's clock",
    );
    // An approval by the accepted client for this key id and group key on another network:
    // the nodes refuse it.
    let other_network = permafrost_api::KeyRecord {
        network_id: format!("{}-other", key.network_id),
        ..key.clone()
    };
    let elsewhere = accepted
        .authorize_key(&other_network, &root, b"pay 10 to alice")
        .unwrap();
    refused(
        client
            .sign_request(&key.key_id, &body(&elsewhere, b"pay 10 to alice"))
            .await,
        "does not verify over this network id, group key, key id, path and message",
    );
    // An approval for one child key, sent for another child (or for the key itself): refused.
    let child: DerivationPath = "m/0/1".parse().unwrap();
    let for_child = accepted
        .authorize_key(&key, &child, b"pay 10 to alice")
        .unwrap();
    for path in [Some("m/0/2"), None] {
        refused(
            client
                .sign_request(
                    &key.key_id,
                    &SignRequest {
                        path: path.map(str::to_owned),
                        ..body(&for_child, b"pay 10 to alice")
                    },
                )
                .await,
            "does not verify",
        );
    }
    // The same approval for the child it names signs, under that child's key.
    let signed = client
        .sign_request(
            &key.key_id,
            &SignRequest {
                path: Some("m/0/1".into()),
                ..body(&for_child, b"pay 10 to alice")
            },
        )
        .await
        .unwrap();
    let child_key = client.derive(&key.key_id, &child).await.unwrap();
    assert_eq!(signed.public_key, child_key.public_key);
    assert_eq!(signed.path, "m/0/1");
    permafrost_verifiers::verify(
        key.curve,
        &hex::decode(&child_key.public_key).unwrap(),
        b"pay 10 to alice",
        &hex::decode(&signed.signature).unwrap(),
    )
    .unwrap();
    // A flood of refusals: a node audits at most 32 a second one by one and counts the rest.
    let flood: Vec<_> = (0..FLOOD)
        .map(|i| {
            let (client, key) = (client.clone(), key.clone());
            tokio::spawn(async move {
                let stranger = ClientKey::generate();
                client
                    .sign_key_as(
                        &stranger,
                        &key,
                        &DerivationPath::ROOT,
                        format!("flood {i}").as_bytes(),
                    )
                    .await
            })
        })
        .collect();
    for request in flood {
        refused(request.await.unwrap(), "is not accepted");
    }
    // Let the nodes write the count of the refusals over the cap (at the next second), and
    // sync it (a second after it is written): node1 is SIGKILLed below, and may sign nothing
    // meanwhile whose sync would carry them.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Malformed approvals are the client's mistake: 400 before any node is asked.
    let mut short = ClientAuthorization::from_wire(&fresh);
    short.signature.truncate(10);
    let outcome = client
        .sign_request(
            &key.key_id,
            &SignRequest {
                message: "00".into(),
                path: None,
                client: Some(short),
            },
        )
        .await;
    assert_eq!(
        outcome.as_ref().err().and_then(http_status),
        Some(400),
        "{outcome:?}"
    );

    // No client in the request: the coordinator's gateway key, which the nodes list.
    sign_and_verify(client, &key, b"through the gateway", &all).await;
    // The CLI with the client key file.
    let out = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "sign",
            "--key",
            &key.key_id,
            "--message",
            &permafrost_api::encode_hex(b"from the cli"),
            "--client-key",
            dir.join("client.key").to_str().unwrap(),
            "--network-id",
            &key.network_id,
            "--public-key",
            &key.public_key,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let from_cli: permafrost_api::SignResponse = serde_json::from_slice(&out.stdout).unwrap();
    verify_response(&key, b"from the cli", &from_cli, &all);
    // Pinned to another network id, the CLI approves nothing and sends nothing.
    let out = Command::new(BIN)
        .args([
            "--localnet",
            dir.to_str().unwrap(),
            "sign",
            "--key",
            &key.key_id,
            "--message",
            &permafrost_api::encode_hex(b"from the cli"),
            "--client-key",
            dir.join("client.key").to_str().unwrap(),
            "--network-id",
            "another-network",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not \"another-network\": nothing approved"),
        "{out:?}"
    );

    // What node1 refused so far, by its own count: not every request above reached it (a
    // member holding a pooled commitment is sent nothing until an attempt starts, and a
    // request whose approval two members refused ends before one does).
    let refused_before_restart = signing_refusals(info, "node1").await;

    // Restarted nodes still refuse the replay: admitted request ids are on their disks.
    let mut restarted = Vec::new();
    for node in &info.nodes {
        sigkill(node.pid);
        await_connected(client, &node.name, false).await;
        restarted.push(restart_node(dir, net.logs(), &node.name));
        await_connected(client, &node.name, true).await;
    }
    refused(
        client
            .sign_request(&key.key_id, &body(&approved, b"pay 10 to alice"))
            .await,
        "already used in session",
    );
    sign_and_verify(client, &key, b"after the restarts", &all).await;

    // node1's audit log: the admissions (an entry with the client approval: a client request,
    // or a signature share made in the batch of its admission) and the refusals. The replays'
    // refusals are written lazily and synced a second after the first of them (OPERATIONS.md
    // §9): wait for that sync before node1 is SIGKILLed, as for the flood above.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let refused_by_node1 = refused_before_restart + signing_refusals(info, "node1").await;
    drop(restarted);
    let store = open_node_keystore(dir, "node1");
    let audit = store.audit().unwrap();
    let admitted = audit.iter().filter(|(_, e)| e.client.is_some()).count();
    let refused_entries: Vec<&permafrost_keystore::AuditEntry> = audit
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.kind == permafrost_keystore::AuditKind::Refused)
        .collect();
    let refusals: Vec<&str> = refused_entries
        .iter()
        .filter(|e| !e.detail.contains("not written one by one"))
        .map(|e| e.detail.as_str())
        .collect();
    let counted: u64 = refused_entries
        .iter()
        .filter(|e| e.detail.contains("not written one by one"))
        .map(|e| e.detail.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    println!(
        "node1 audit: {admitted} client requests admitted, {} refusals written one by one, {counted} counted; {refused_by_node1} refused by its metrics",
        refusals.len()
    );
    // Every refusal node1 made (its metrics counted them, in both processes) is in its log,
    // one by one or counted: of the tampered message, the unknown key, the stale approval, the
    // other network's approval, the child approval sent for another child and for the key
    // itself, the flood, and the replay (twice) if node1 was among the two asked for the
    // original.
    let replays = refusals
        .iter()
        .filter(|r| r.contains("already used in session"))
        .count() as u64;
    assert!(replays <= 2, "{refusals:#?}");
    assert_eq!(
        refusals.len() as u64 + counted,
        refused_by_node1,
        "{refusals:#?}"
    );
    // Much of the flood reached node1: it is asked first or second whenever it holds no pooled
    // commitment, or as the third member after a refusal.
    assert!(
        refused_by_node1 >= FLOOD as u64 / 4,
        "{refused_by_node1} refusals"
    );
    let mut per_second = std::collections::BTreeMap::new();
    for e in refused_entries
        .iter()
        .filter(|e| !e.detail.contains("not written one by one"))
    {
        *per_second.entry(e.time_unix_ms / 1000).or_insert(0) += 1;
    }
    assert!(per_second.values().all(|n| *n <= 32), "{per_second:?}");
    assert!(admitted >= 1, "{audit:?}");
    // A replay is refused as already used only by the nodes that admitted the original: node1
    // surely did if it signed it (the coordinator asks t = 2 of 3, in its order of preference).
    let node1_signed_the_original = signed.signers.iter().any(|s| s == "node1");
    for why in [
        "already used in session",
        "does not verify",
        "is not accepted",
        "from this node's clock",
    ] {
        if why == "already used in session" && !node1_signed_the_original {
            continue;
        }
        assert!(
            refusals.iter().any(|r| r.contains(why)),
            "no audited refusal saying {why:?}: {refusals:?}"
        );
    }
    assert!(refusals.iter().any(|r| r.contains(&stranger.public_hex())));
}

/// Runs the `permafrost` CLI against the localnet in `dir`.
fn cli(dir: &Path, args: &[&str]) -> std::process::Output {
    cli_command(dir, args).output().unwrap()
}

/// Runs the `permafrost` CLI against the localnet in `dir` with `input` on its standard input.
fn cli_with_input(dir: &Path, args: &[&str], input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cli_command(dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// The `permafrost` CLI against the localnet in `dir`, not started.
fn cli_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--localnet", dir.to_str().unwrap()])
        .args(args)
        .env_remove("PERMAFROST_CLIENT_KEY");
    command
}

/// The CLI for scripts, end to end (standard output is not a terminal here): `keys list`,
/// `keys show` and `health` print the API's answer as pretty JSON, with or without `--json`;
/// `sign` takes the message's bytes, as they are, from a file or from standard input, and the
/// signature verifies over exactly those bytes; a message over the API's limit is refused
/// before anything is sent; `localnet up` reports its progress as plain lines on standard
/// error.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_prints_json_for_scripts_and_signs_a_message_file_or_stdin() {
    let net = UpLocalnet::start(2, Duration::from_secs(60)).await;
    let (client, dir) = (&net.client, &net.dir);
    let key = create_key(client, Curve::Ed25519, 2).await;

    for args in [&["keys", "list"][..], &["--json", "keys", "list"]] {
        let out = cli(dir, args);
        assert!(out.status.success(), "{out:?}");
        let keys = client.keys().await.unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            pretty(&keys),
            "{args:?}"
        );
    }
    let out = cli(dir, &["keys", "show", &key.key_id, "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), pretty(&key));
    let out = cli(dir, &["health"]);
    assert!(out.status.success(), "{out:?}");
    let health: permafrost_api::Health = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health.nodes.len(), 2, "{health:?}");

    // Binary bytes (not UTF-8, a NUL, a trailing newline), from a file and from stdin.
    let message: Vec<u8> = (0..=255u8).rev().chain(*b"\r\n").collect();
    let file = net.logs().join("message.bin");
    std::fs::write(&file, &message).unwrap();
    let all = ["node1", "node2"];
    let out = cli(
        dir,
        &[
            "sign",
            "--key",
            &key.key_id,
            "--message-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let signed: permafrost_api::SignResponse = serde_json::from_slice(&out.stdout).unwrap();
    verify_response(&key, &message, &signed, &all);
    let from_stdin = b"settle batch 42\n\xff";
    let out = cli_with_input(
        dir,
        &[
            "sign",
            "--key",
            &key.key_id,
            "--message-file",
            "-",
            "--client-key",
            dir.join("client.key").to_str().unwrap(),
        ],
        from_stdin,
    );
    assert!(out.status.success(), "{out:?}");
    let signed: permafrost_api::SignResponse = serde_json::from_slice(&out.stdout).unwrap();
    verify_response(&key, from_stdin, &signed, &all);

    // One byte over the API's limit: refused by the CLI, with nothing on standard output.
    let too_long = net.logs().join("too-long.bin");
    std::fs::write(&too_long, vec![b'x'; 64 * 1024 + 1]).unwrap();
    let out = cli(
        dir,
        &[
            "sign",
            "--key",
            &key.key_id,
            "--message-file",
            too_long.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: the message from ")
            && stderr.contains("is longer than 65536 bytes"),
        "{stderr}"
    );

    // Progress of `localnet up`: plain lines, no spinner, no control characters.
    let progress = std::fs::read_to_string(&net.localnet.stderr).unwrap();
    for line in [
        "starting 2 nodes and a coordinator in ",
        "identities and configs ready",
        "started the coordinator and 2 nodes, each in its own process",
        "nodes connected to the coordinator: 2/2",
    ] {
        assert!(
            progress.lines().any(|l| l.starts_with(line)),
            "no {line:?} in\n{progress}"
        );
    }
    assert!(
        !progress.contains(['\r', '\x1b']),
        "control characters in {progress:?}"
    );
}

/// `value` as the CLI prints JSON: pretty, one line feed after it.
fn pretty(value: &impl serde::Serialize) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).unwrap())
}

/// Real processes, operator approval: on a localnet whose nodes do not list the coordinator's
/// gateway operator key, a DKG and a reshare asked for without approvals are 403 and change
/// nothing on any node's disk (read after stopping the localnet); approved with the localnet's
/// operator key (`--operator-key`), both run and the key signs.
#[tokio::test(flavor = "multi_thread")]
async fn only_an_operators_approval_changes_a_key_on_the_localnet() {
    let mut net = UpLocalnet::start_with(
        3,
        Duration::from_secs(90),
        &["--require-operator-approval"],
        &[],
    )
    .await;
    let dir = net.dir.clone();
    let operator = dir.join("operator.key");
    let operator = operator.to_str().unwrap();
    let all = ["node1", "node2", "node3"];
    let create = ["keys", "create", "--curve", "secp256k1", "--threshold", "2"];

    let refused = cli(&dir, &create);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: operator_not_approved: "),
        "{stderr}"
    );

    let created = cli(&dir, &[&create[..], &["--operator-key", operator]].concat());
    assert!(
        created.status.success(),
        "{created:?}\n{}",
        net.localnet.output()
    );
    let key: permafrost_api::KeyRecord = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!((key.epoch, key.threshold), (0, 2));
    sign_and_verify(&net.client, &key, b"created with approval", &all).await;

    let reshare = [
        "reshare",
        "--key",
        &key.key_id,
        "--threshold",
        "3",
        "--nodes",
        "node1,node2,node3",
    ];
    let refused = cli(&dir, &reshare);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: operator_not_approved: "),
        "{stderr}"
    );

    // Every node's disk: the key's epoch-0 share, ACTIVE, and no reshare record.
    let status = Command::new("kill")
        .args(["-TERM", &net.localnet.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = net.localnet.wait(STOP_DEADLINE);
    assert!(status.success(), "{status}\n{}", net.localnet.output());
    for name in all {
        let store = open_node_keystore(&dir, name);
        let shares: Vec<_> = store
            .shares()
            .unwrap()
            .into_iter()
            .map(|m| (m.key_id, m.epoch, m.state))
            .collect();
        assert_eq!(
            shares,
            vec![(
                key.key_id.clone(),
                0,
                permafrost_keystore::ShareState::Active
            )],
            "{name}"
        );
        assert!(store.reshares().unwrap().is_empty(), "{name}");
    }

    // Up again on the same directory: approved, the reshare commits.
    let (localnet, _) = localnet_up_with(
        net.logs(),
        3,
        &["--require-operator-approval"],
        &[],
        "localnet-again",
    );
    net.localnet = localnet;
    net.info = await_info(&mut net.localnet, &dir).await;
    net.client = Client::from_localnet(&net.info)
        .unwrap()
        .with_timeout(Duration::from_secs(90));
    let reshared = cli(
        &dir,
        &[&reshare[..], &["--operator-key", operator]].concat(),
    );
    assert!(
        reshared.status.success(),
        "{reshared:?}\n{}",
        net.localnet.output()
    );
    let reshared: permafrost_api::KeyRecord = serde_json::from_slice(&reshared.stdout).unwrap();
    assert_eq!((reshared.epoch, reshared.threshold), (1, 3));
    assert_eq!(reshared.public_key, key.public_key);
    sign_and_verify(&net.client, &reshared, b"reshared with approval", &all).await;
}

/// The coordinator's liveness probe sees through an open connection: a paused (SIGSTOP) node
/// turns unhealthy within `unhealthy_after` (3 s by default) while its connection stays up, and
/// healthy again after SIGCONT; readiness follows the keys' thresholds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_turns_unhealthy_and_back() {
    let net = UpLocalnet::start(3, Duration::from_secs(30)).await;
    let (client, info) = (&net.client, &net.info);
    let api = CheckedApi::new(info).await;
    for node in ["node1", "node2", "node3"] {
        until_healthy_is(client, node, true).await;
    }
    let health = client.health().await.unwrap();
    for node in &health.nodes {
        assert!(node.last_round_trip_us.is_some_and(|us| us > 0), "{node:?}");
        assert!(
            node.last_probe_age_ms.is_some_and(|ms| ms <= 3000),
            "{node:?}"
        );
        assert_eq!(node.probe_error, None, "{node:?}");
    }
    // No key yet: ready while any node is healthy. Then one 3-of-3 key: ready while it can be
    // signed with, so while all three are.
    until_ready_is(&api, true).await;
    create_key(client, Curve::Ed25519, 3).await;
    until_ready_is(&api, true).await;

    let pid = info.nodes.iter().find(|n| n.name == "node2").unwrap().pid;
    signal(pid, "STOP");
    let took = until_healthy_is(client, "node2", false).await;
    println!("node2 paused: unhealthy after {took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let health = client.health().await.unwrap();
    let node2 = health.nodes.iter().find(|n| n.name == "node2").unwrap();
    assert!(node2.connected, "the connection stays open: {node2:?}");
    assert!(node2.last_probe_age_ms.unwrap() > 3000, "{node2:?}");
    assert!(
        health.nodes.iter().filter(|n| n.healthy).count() == 2,
        "{health:?}"
    );
    // The 3-of-3 key cannot be signed with now.
    until_ready_is(&api, false).await;

    signal(pid, "CONT");
    let took = until_healthy_is(client, "node2", true).await;
    println!("node2 resumed: healthy after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    until_ready_is(&api, true).await;
}

/// One signature, one trace: with JSON logs and the session target on, the coordinator logs
/// the caller's `X-Request-Id` beside the id of the session it opened, and every signer that
/// took part logs that session id. The answer returns the request id (a made-up one when the
/// caller gave none); a malformed one is refused before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signature_is_followed_through_every_log_by_its_session_id() {
    let net = UpLocalnet::start_with(
        3,
        Duration::from_secs(30),
        &[],
        &[
            ("PERMAFROST_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,permafrost::session=debug"),
        ],
    )
    .await;
    let key = create_key(&net.client, Curve::Secp256k1, 2).await;
    let http = reqwest::Client::new();
    let sign_url = format!("{}/v1/keys/{}/sign", net.info.api, key.key_id);
    let message = b"followed through the logs";
    let body = serde_json::json!({ "message": hex::encode(message) });

    let request_id = "trace-e2e-0001";
    let answer = http
        .post(&sign_url)
        .bearer_auth(&net.info.token)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-request-id"], request_id);
    let signed: permafrost_api::SignResponse = answer.json().await.unwrap();
    verify_response(&key, message, &signed, &["node1", "node2", "node3"]);

    // The coordinator's log ties the request id to one session id ...
    let coordinator_log = net.dir.join("coordinator").join("coordinator.log");
    let session = wait_for_log(&coordinator_log, |line| {
        (field(line, "request_id") == Some(request_id))
            .then(|| field(line, "session").map(str::to_owned))
            .flatten()
    })
    .await;
    assert_eq!(
        session.len(),
        64,
        "a session id is 32 bytes, hex: {session}"
    );
    // ... which every signer logged.
    for signer in &signed.signers {
        let log = net.dir.join(signer).join(format!("{signer}.log"));
        wait_for_log(&log, |line| {
            (field(line, "session") == Some(session.as_str())).then_some(())
        })
        .await;
    }

    // No id given: one is made up and returned.
    let answer = http
        .get(format!("{}/v1/keys", net.info.api))
        .bearer_auth(&net.info.token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let made_up = answer.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made_up.len(), 32, "{made_up}");
    assert!(made_up.bytes().all(|b| b.is_ascii_hexdigit()), "{made_up}");

    // A malformed id: 400, and no signing session is opened for it.
    let sessions_before = count_log_lines(&coordinator_log, "signing session");
    let answer = http
        .post(&sign_url)
        .bearer_auth(&net.info.token)
        .header("x-request-id", "not a valid id")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 400);
    let error: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(error["error"]["code"], "bad_request", "{error}");
    // Without a token it is the 401 it always was: the token is checked first.
    let answer = http
        .post(&sign_url)
        .header("x-request-id", "not a valid id")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count_log_lines(&coordinator_log, "signing session"),
        sessions_before
    );
}

/// A field of a JSON log line: among the event's fields, or the fields of the spans it
/// happened in.
fn field<'a>(line: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    line["fields"][name]
        .as_str()
        .or_else(|| line["span"][name].as_str())
        .or_else(|| {
            line["spans"]
                .as_array()?
                .iter()
                .find_map(|span| span[name].as_str())
        })
}

/// Reads the JSON lines of `log` until `found` finds what it looks for (10 s at most).
async fn wait_for_log<T>(log: &Path, found: impl Fn(&serde_json::Value) -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let hit = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find_map(|line| found(&line));
        if let Some(hit) = hit {
            return hit;
        }
        assert!(
            Instant::now() < until,
            "not found in {}:\n{text}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many lines of `log` contain `text`.
fn count_log_lines(log: &Path, text: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(text))
        .count()
}

/// What a watch-only wallet derives from a key's exported `xpub` at `path` (for secp256k1-tr,
/// `tr(<xpub>/<path>)`): the child public key in the API's form, and for taproot the internal
/// key. Computed with the `bitcoin` crate, independently of Permafrost.
fn wallet_child(key: &KeyRecord, path: &str) -> (String, Option<String>) {
    use bitcoin::key::TapTweak as _;
    use std::str::FromStr as _;
    let secp = bitcoin::secp256k1::Secp256k1::verification_only();
    let xpub = bitcoin::bip32::Xpub::from_str(key.xpub.as_deref().unwrap()).unwrap();
    let path = bitcoin::bip32::DerivationPath::from_str(path).unwrap();
    let child = xpub.derive_pub(&secp, &path).unwrap();
    match key.curve {
        Curve::Secp256k1 => (hex::encode(child.public_key.serialize()), None),
        Curve::Secp256k1Tr => {
            let (output, parity) = child.to_x_only_pub().tap_tweak(&secp, None);
            let prefix = match parity {
                bitcoin::secp256k1::Parity::Even => "02",
                bitcoin::secp256k1::Parity::Odd => "03",
            };
            let output = format!(
                "{prefix}{}",
                hex::encode(output.to_x_only_public_key().serialize())
            );
            (output, Some(hex::encode(child.public_key.serialize())))
        }
        Curve::Ed25519 => unreachable!("BIP-32 does not cover ed25519"),
    }
}

/// Child keys on a real network, every curve: a key's exported `xpub` gives a wallet the same
/// child keys the API derives (checked with the `bitcoin` crate); the CLI and the API sign at
/// two paths, each signature verifying independently under its child key only; a reshare
/// (t 2 → 3) changes neither the chain code nor any child key, and the same paths sign again.
#[tokio::test(flavor = "multi_thread")]
async fn child_keys_derive_like_a_wallet_and_survive_a_reshare() {
    let net = UpLocalnet::start(3, Duration::from_secs(60)).await;
    let (client, dir) = (&net.client, &net.dir);
    let all = ["node1", "node2", "node3"];
    let paths = ["m/0/1", "m/7"];
    for curve in Curve::ALL {
        let key = create_key(client, curve, 2).await;
        assert_eq!(key.chain_code.len(), 64);
        assert_eq!(key.xpub.is_some(), curve != Curve::Ed25519, "{key:?}");
        let mut before = Vec::new();
        let mut current = key.clone();
        for epoch in 0..2u64 {
            if epoch == 1 {
                let reshared = client
                    .reshare(
                        &key.key_id,
                        &permafrost_api::ReshareRequest {
                            threshold: 3,
                            nodes: all.iter().map(|s| s.to_string()).collect(),
                            approvals: Vec::new(),
                        },
                    )
                    .await
                    .unwrap();
                assert_eq!((reshared.epoch, reshared.threshold), (1, 3));
                assert_eq!(reshared.public_key, key.public_key);
                assert_eq!(reshared.chain_code, key.chain_code);
                assert_eq!(reshared.xpub, key.xpub);
                current = reshared;
            }
            let key = &current;
            for (i, path) in paths.iter().enumerate() {
                let at: DerivationPath = path.parse().unwrap();
                let child = client.derive(&key.key_id, &at).await.unwrap();
                assert_eq!(child.path, *path);
                if curve != Curve::Ed25519 {
                    let (public_key, internal_key) = wallet_child(key, path);
                    assert_eq!(child.public_key, public_key, "{curve} {path}");
                    assert_eq!(child.internal_key, internal_key, "{curve} {path}");
                }
                assert_ne!(child.public_key, key.public_key);
                if epoch == 0 {
                    before.push(child.public_key.clone());
                } else {
                    assert_eq!(child.public_key, before[i], "{curve} {path} changed");
                }
                // The first path through the CLI (`sign --path`), the second through the API.
                let message = format!("epoch {epoch} at {path}");
                let signed = if i == 0 {
                    let out = cli(
                        dir,
                        &[
                            "--json",
                            "sign",
                            "--key",
                            &key.key_id,
                            "--path",
                            path,
                            "--message",
                            &hex::encode(&message),
                        ],
                    );
                    assert!(out.status.success(), "{out:?}");
                    serde_json::from_slice::<permafrost_api::SignResponse>(&out.stdout).unwrap()
                } else {
                    client
                        .sign_at(&key.key_id, &at, message.as_bytes())
                        .await
                        .unwrap()
                };
                assert_eq!((signed.path.as_str(), signed.epoch), (*path, epoch));
                assert_eq!(signed.public_key, child.public_key);
                let signature = hex::decode(&signed.signature).unwrap();
                let verify = |public_key: &str| {
                    permafrost_verifiers::verify(
                        curve,
                        &hex::decode(public_key).unwrap(),
                        message.as_bytes(),
                        &signature,
                    )
                };
                verify(&child.public_key).unwrap();
                assert!(verify(&key.public_key).is_err());
            }
        }
        // The CLI shows the same child key.
        let out = cli(
            dir,
            &["--json", "keys", "derive", &key.key_id, "--path", paths[1]],
        );
        assert!(out.status.success(), "{out:?}");
        let shown: permafrost_api::ChildKey = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown.public_key, before[1]);
    }
    // Bad paths are the client's mistake: 400, nothing derived or signed.
    let key = create_key(client, Curve::Secp256k1, 2).await;
    for bad in ["m/0'", "0/1", "m/2147483648", "m//1"] {
        let url = format!(
            "{}/v1/keys/{}/derive?path={bad}",
            client.base_url(),
            key.key_id
        );
        let status = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&net.info.token)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 400, "{bad}");
        let signed = client
            .sign_request(
                &key.key_id,
                &permafrost_api::SignRequest {
                    message: "00".into(),
                    path: Some(bad.into()),
                    client: None,
                },
            )
            .await;
        assert_eq!(
            signed.as_ref().err().and_then(http_status),
            Some(400),
            "{bad}: {signed:?}"
        );
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A key's rotation policy on a real network, through the CLI and the Rust client: set (the
/// gateway operator key approves, or an approval made with the localnet's operator key file,
/// by the client or by `--operator-key`), shown in the key record with its interval, its next
/// run an interval from now, and the committee and threshold it keeps; refused under 60 s (by
/// the API, and by the CLI before anything is sent), 404 for an unknown key; cleared (twice:
/// both 200). No refresh runs here: the shortest interval is a minute.
#[tokio::test(flavor = "multi_thread")]
async fn rotation_policy_is_set_shown_and_cleared_on_the_localnet() {
    use permafrost_api::{OperatorApproval, RotationRequest};

    let net = UpLocalnet::start(3, Duration::from_secs(60)).await;
    let (client, dir) = (&net.client, &net.dir);
    let key = create_key(client, Curve::Ed25519, 2).await;
    assert_eq!(key.rotation, None);
    let mut committee = key.nodes.clone();
    committee.sort();
    assert_eq!(committee, ["node1", "node2", "node3"]);

    // Through the CLI, approved by the coordinator's gateway operator key.
    let before = now_ms();
    let out = cli(
        dir,
        &[
            "keys",
            "rotation",
            "set",
            "--key",
            &key.key_id,
            "--every",
            "1h",
        ],
    );
    let after = now_ms();
    assert!(out.status.success(), "{out:?}");
    let set: KeyRecord = serde_json::from_slice(&out.stdout).unwrap();
    let rotation = set.rotation.clone().expect("no rotation in the answer");
    assert_eq!(rotation.every_secs, 3_600);
    assert_eq!(rotation.last_ms, None);
    assert_eq!(rotation.threshold, 2);
    let mut kept = rotation.nodes.clone();
    kept.sort();
    assert_eq!(kept, committee);
    assert!(
        rotation.next_ms + 60_000 >= before + 3_600_000
            && rotation.next_ms <= after + 3_600_000 + 60_000,
        "next_ms {} is not an hour after {before}..{after}",
        rotation.next_ms
    );
    // The record of the key is unchanged but for its rotation, in every view of it.
    assert_eq!(
        KeyRecord {
            rotation: None,
            ..set.clone()
        },
        key
    );
    assert_eq!(client.key(&key.key_id).await.unwrap(), set);
    let listed = client.keys().await.unwrap();
    assert!(listed.keys.contains(&set), "{listed:?}");
    let out = cli(dir, &["keys", "rotation", "show", "--key", &key.key_id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        pretty(&set.rotation)
    );

    // Through the Rust client, approved with the localnet's operator key (the nodes list it).
    let operator = permafrost_api::ClientKey::load(&dir.join("operator.key")).unwrap();
    let health = client.health().await.unwrap();
    let mut node_ids: Vec<permafrost_wire::NodeId> = key
        .nodes
        .iter()
        .map(|name| {
            let node = health.nodes.iter().find(|n| n.name == *name).unwrap();
            permafrost_runtime::identity::node_id_of_text(&node.peer_id).unwrap()
        })
        .collect();
    node_ids.sort();
    let action = permafrost_protocol::lifecycle::rotation_policy_action(
        &permafrost_wire::KeyId::new(key.key_id.clone()).unwrap(),
        key.curve,
        &hex::decode(&key.public_key).unwrap(),
        node_ids,
        key.threshold,
        7_200,
    );
    let approval = operator.approve(&health.network_id, &action);
    approval.verify(&health.network_id, &action).unwrap();
    let request = RotationRequest {
        every_secs: 7_200,
        approvals: vec![OperatorApproval::from_wire(&approval)],
    };
    let before = now_ms();
    let set = client.set_rotation(&key.key_id, &request).await.unwrap();
    let rotation = set.rotation.clone().unwrap();
    assert_eq!((rotation.every_secs, rotation.threshold), (7_200, 2));
    assert!(
        rotation.next_ms + 60_000 >= before + 7_200_000
            && rotation.next_ms <= now_ms() + 7_200_000 + 60_000,
        "{rotation:?}"
    );
    assert_eq!(client.key(&key.key_id).await.unwrap(), set);

    // Through the CLI with --operator-key: it says on stderr what the operator approves.
    let out = cli(
        dir,
        &[
            "keys",
            "rotation",
            "set",
            "--key",
            &key.key_id,
            "--every",
            "90m",
            "--operator-key",
            dir.join("operator.key").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "approves on network {:?}: rotation of key {} (ed25519) every 5400 s, keeping threshold 2 of [",
            health.network_id, key.key_id
        )),
        "{stderr}"
    );
    let set: KeyRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set.rotation.as_ref().unwrap().every_secs, 5_400);

    // Under a minute: 400 from the API, and the policy stays as it was.
    let error = client
        .set_rotation(
            &key.key_id,
            &RotationRequest {
                every_secs: 59,
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (http_status(&error), error.code()),
        (Some(400), Some("bad_request")),
        "{error}"
    );
    assert!(error.to_string().contains("every 60 s"), "{error}");
    assert_eq!(client.key(&key.key_id).await.unwrap(), set);
    // The CLI refuses it before asking anything (a usage error, exit status 2).
    let out = cli(
        dir,
        &[
            "keys",
            "rotation",
            "set",
            "--key",
            &key.key_id,
            "--every",
            "59s",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shortest rotation interval, 60 s"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());

    // An unknown key: 404, from both routes and the CLI.
    let error = client
        .set_rotation(
            "k-no-such-key",
            &RotationRequest {
                every_secs: 3_600,
                approvals: Vec::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");
    let error = client.clear_rotation("k-no-such-key").await.unwrap_err();
    assert_eq!(http_status(&error), Some(404), "{error}");
    let out = cli(dir, &["keys", "rotation", "show", "--key", "k-no-such-key"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: not_found: "),
        "{out:?}"
    );

    // Cleared: the record's rotation is null; clearing again is still 200.
    let cleared = client.clear_rotation(&key.key_id).await.unwrap();
    assert_eq!(cleared.rotation, None);
    assert_eq!(cleared, key);
    assert_eq!(client.key(&key.key_id).await.unwrap().rotation, None);
    let out = cli(dir, &["keys", "rotation", "clear", "--key", &key.key_id]);
    assert!(out.status.success(), "{out:?}");
    let again: KeyRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again, key);
    let out = cli(dir, &["keys", "rotation", "show", "--key", &key.key_id]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "null\n");
}

//! The git driver against real servers on 127.0.0.1 that the tests start themselves: smart
//! HTTP (`git http-backend` behind basic auth) with the password from a credential helper,
//! the same over TLS with a private CA given through `http.sslCAInfo`, and ssh (Debian's
//! `sshd` on a free port, a generated key, reached through a `Host` entry of an ssh config).
//! Each time two replicas sync through the server, a plain `git clone` of the same URL sees
//! every task, and wrong credentials fail with one clear sentence.
//!
//! The servers' programs are installed by `scripts/test` (openssh-server); the client side
//! is configured in each clone's own git config, as a user would.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{bare, git, put_local};
use hypertask_core::{Engine, Replica, SyncOptions, SyncReport, Task, TaskId};
use serde_json::json;

/// A server process, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command, asserting success.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git http-backend` behind basic auth (`alice` / `password`), over TLS when given a
/// certificate and key.
fn http_server(root: &Path, password: &str, tls: Option<(&Path, &Path)>) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/git_http_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(root).arg("alice").arg(password);
    if let Some((cert, key)) = tls {
        cmd.arg(cert).arg(key);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs the test HTTP server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    Server { child, port }
}

/// A private CA and a certificate for 127.0.0.1 signed by it: (CA cert, cert, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (ca_key, ca, key, csr, cert, ext) = (
        dir.join("ca.key"),
        dir.join("ca.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
        dir.join("server.pem"),
        dir.join("san.ext"),
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=hypertask test CA",
        ])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .args(["req", "-subj", "/CN=127.0.0.1"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
        .arg("-in")
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    (ca, cert, key)
}

/// An empty clone at `path` on branch main with `config` in its own git config, as a user
/// sets up a clone for a server that needs credentials or a private CA.
fn prepared_clone(path: &Path, config: &[(&str, String)]) {
    std::fs::create_dir_all(path).unwrap();
    git(path, &["init", "--quiet", "--initial-branch=main"]);
    for (k, v) in config {
        git(path, &["config", k, v]);
    }
}

/// A credential-store file holding `password` for alice at `url`'s host.
fn credentials(dir: &Path, name: &str, url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let host = rest.split('/').next().unwrap();
    let file = dir.join(name);
    std::fs::write(&file, format!("{scheme}://alice:{password}@{host}\n")).unwrap();
    format!("store --file={}", file.display())
}

fn task(id: &str, description: &str) -> Task {
    Task::from_value(json!({"id": id, "description": description})).unwrap()
}

async fn sync(data: &Path, clone: &Path, remote: &str) -> SyncReport {
    let driver = common::driver("upstream", json!({"path": clone, "remote": remote}), data);
    Engine::new(
        Replica::open(data).unwrap(),
        vec![hypertask_core::Checked::new(driver)],
        SyncOptions::default(),
    )
    .sync()
    .await
    .expect("the cache syncs")
}

/// The error a failing sync reported for its one driver.
async fn sync_error(data: &Path, clone: &Path, remote: &str) -> String {
    let report = sync(data, clone, remote).await;
    report.drivers[0]
        .error
        .clone()
        .unwrap_or_else(|| panic!("the sync should fail: {report:#?}"))
}

/// Two replicas, each with its own prepared clone, sync through `url`; then a plain `git
/// clone` with `clone_config` sees every task.
async fn two_replicas_converge(dir: &Path, url: &str, config: &[(&str, String)]) {
    let (data_a, data_b) = (dir.join("data-a"), dir.join("data-b"));
    let (clone_a, clone_b) = (dir.join("clone-a"), dir.join("clone-b"));
    prepared_clone(&clone_a, config);
    prepared_clone(&clone_b, config);
    put_local(&data_a, &[task("from-a", "written on a")]);
    put_local(&data_b, &[task("from-b", "written on b")]);
    for (data, clone) in [
        (&data_a, &clone_a),
        (&data_b, &clone_b),
        (&data_a, &clone_a),
    ] {
        let report = sync(data, clone, url).await;
        assert!(report.is_ok(), "{report:#?}");
    }
    for data in [&data_a, &data_b] {
        let replica = Replica::open(data).unwrap();
        for id in ["from-a", "from-b"] {
            assert!(
                replica.get(&TaskId::new(id).unwrap()).unwrap().is_some(),
                "{id} reached {}",
                data.display()
            );
        }
    }
    let plain = dir.join("plain");
    let mut args: Vec<String> = Vec::new();
    for (k, v) in config {
        args.push("-c".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(["clone", "--quiet", url, plain.to_str().unwrap()].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    git(dir, &args);
    let listed = git(&plain, &["ls-files", "tasks"]);
    assert_eq!(listed, "tasks/from-a.json\ntasks/from-b.json\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_with_a_credential_helper() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let served = dir.join("served");
    bare(&served, "tasks.git");
    let server = http_server(&served, "s3cret pass", None);
    let url = format!("http://127.0.0.1:{}/tasks.git", server.port);
    let helper = credentials(dir, "good-credentials", &url, "s3cret%20pass");
    two_replicas_converge(dir, &url, &[("credential.helper", helper)]).await;

    // A wrong password from the helper: refused, in one sentence naming the remote.
    let wrong = credentials(dir, "wrong-credentials", &url, "guess");
    let clone = dir.join("clone-wrong");
    prepared_clone(&clone, &[("credential.helper", wrong)]);
    let e = sync_error(&dir.join("data-c"), &clone, &url).await;
    assert!(
        e.contains(&format!("authentication to {url} failed"))
            && e.contains("refused the user name and password"),
        "{e}"
    );
    assert!(!e.contains("guess"), "{e}");
    // No credentials at all: git would prompt, hypertask never does.
    let clone = dir.join("clone-none");
    prepared_clone(&clone, &[]);
    let e = sync_error(&dir.join("data-d"), &clone, &url).await;
    assert!(e.contains("supplied no user name and password"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_https_with_a_private_ca_from_ssl_ca_info() {
    // git lets GIT_SSL_CAINFO win over http.sslCAInfo, and some machines set it for every
    // program. This test is about the config, so this test process drops the variable.
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::remove_var("GIT_SSL_CAINFO");
        std::env::remove_var("GIT_SSL_CAPATH");
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let served = dir.join("served");
    bare(&served, "tasks.git");
    let (ca, cert, key) = certificates(dir);
    let server = http_server(&served, "tls-pass", Some((&cert, &key)));
    let url = format!("https://127.0.0.1:{}/tasks.git", server.port);
    let helper = credentials(dir, "credentials", &url, "tls-pass");
    let config = [
        ("credential.helper", helper.clone()),
        ("http.sslCAInfo", ca.to_string_lossy().into_owned()),
    ];
    two_replicas_converge(dir, &url, &config).await;

    // Without the CA the certificate is not trusted, and the message says what to set.
    let clone = dir.join("clone-no-ca");
    prepared_clone(&clone, &[("credential.helper", helper)]);
    let e = sync_error(&dir.join("data-c"), &clone, &url).await;
    assert!(
        e.contains(&format!("the TLS certificate of {url} is not trusted"))
            && e.contains("http.sslCAInfo"),
        "{e}"
    );
}

/// `sshd` from Debian's openssh-server, on a free port, accepting `key` for the current user.
struct Sshd {
    server: Server,
    dir: PathBuf,
}

impl Sshd {
    fn start(dir: &Path, authorized: &Path) -> Sshd {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("sshd is installed (scripts/test installs openssh-server)");
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let host_key = dir.join("host_key");
        keygen(&host_key);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\nStrictModes no\nPidFile none\n\
                 LogLevel ERROR\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        // Privilege separation needs its empty directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let server = Server { child, port };
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Sshd { server, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("sshd did not start listening on port {port}");
    }

    /// An ssh config with a `Host` entry for this server using `identity`, trusting its host
    /// key when `trust` is set.
    fn client_config(&self, name: &str, identity: &Path, trust: bool) -> PathBuf {
        let known = self.dir.join(format!("{name}-known_hosts"));
        let host_key = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let line = format!("[127.0.0.1]:{} {}", self.server.port, host_key.trim());
        std::fs::write(&known, if trust { line + "\n" } else { String::new() }).unwrap();
        let config = self.dir.join(format!("{name}-ssh_config"));
        std::fs::write(
            &config,
            format!(
                "Host tasks-server\n  HostName 127.0.0.1\n  Port {}\n  User {}\n  \
                 IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
                 BatchMode yes\n  StrictHostKeyChecking yes\n",
                self.server.port,
                whoami(),
                identity.display(),
                known.display()
            ),
        )
        .unwrap();
        config
    }
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "hypertask-test",
            "-f",
        ])
        .arg(path));
}

fn whoami() -> String {
    run(Command::new("id").arg("-un")).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_through_a_host_entry_of_an_ssh_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let remote = bare(dir, "tasks.git");
    let (key, stranger) = (dir.join("id_user"), dir.join("id_stranger"));
    keygen(&key);
    keygen(&stranger);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
    let sshd = Sshd::start(dir, &authorized);
    let url = format!("tasks-server:{}", remote.display());
    let ssh = |config: &Path| ("core.sshCommand", format!("ssh -F {}", config.display()));
    let good = sshd.client_config("good", &key, true);
    two_replicas_converge(dir, &url, &[ssh(&good)]).await;

    // A key the server does not know.
    let clone = dir.join("clone-stranger");
    prepared_clone(
        &clone,
        &[ssh(&sshd.client_config("stranger", &stranger, true))],
    );
    let e = sync_error(&dir.join("data-c"), &clone, &url).await;
    assert!(
        e.contains(&format!("authentication to {url} failed")) && e.contains("ssh key"),
        "{e}"
    );
    // A server whose host key is not in known_hosts.
    let clone = dir.join("clone-unknown-host");
    prepared_clone(&clone, &[ssh(&sshd.client_config("unknown", &key, false))]);
    let e = sync_error(&dir.join("data-d"), &clone, &url).await;
    assert!(
        e.contains(&format!("the ssh host key of {url} is unknown")),
        "{e}"
    );
}

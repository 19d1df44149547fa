//! A PostgreSQL server of the test's own: the machine's `initdb` and
//! `postgres` in a temporary directory, on a free loopback port, stopped when
//! the test process ends (a shell that holds the server waits on a pipe
//! whose other end only this process holds).

use std::{
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// A running PostgreSQL server with a `postgres` superuser and trust auth on loopback.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
    running: Mutex<Option<(Child, ChildStdin)>>,
}

/// Where the machine keeps PostgreSQL's server programs.
fn server_bin(name: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(path) = on_path {
        return path;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command run as the `postgres` user when this process is root (PostgreSQL refuses root).
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

impl Postgres {
    /// Initialises and starts a server.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("trousse-pg").tempdir()?;
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("cannot give {} to the postgres user", dir.path().display());
            }
        }
        let output = as_server_user(&server_bin("initdb"))
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .arg("-D")
            .arg(dir.path().join("data"))
            .output()
            .context("running initdb (install PostgreSQL's server: apt-get install postgresql)")?;
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let server = Self {
            dir,
            port: free_port(),
            running: Mutex::new(None),
        };
        server.resume()?;
        Ok(server)
    }

    /// The one server the tests of this process share.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start().expect("starting a PostgreSQL server for tests"))
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for a database of the server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn new_database(&self, prefix: &str) -> Result<String> {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        );
        self.sql(&format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs SQL with psql on the `postgres` database.
    pub fn sql(&self, sql: &str) -> Result<String> {
        self.sql_on(&self.url("postgres"), sql)
    }

    /// Runs SQL with psql on a database given by its URL; returns the rows, one per line.
    pub fn sql_on(&self, url: &str, sql: &str) -> Result<String> {
        let output = Command::new("psql")
            .args(["-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
            .output()
            .context("running psql (apt-get install postgresql-client)")?;
        if !output.status.success() {
            bail!("psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Stops the server (fast shutdown: open connections are closed).
    pub fn stop(&self) -> Result<()> {
        let Some((mut child, mut stdin)) = self.running.lock().ok().and_then(|mut r| r.take())
        else {
            return Ok(());
        };
        let _ = stdin.write_all(b"stop\n");
        drop(stdin);
        child.wait()?;
        Ok(())
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) -> Result<()> {
        let data = self.dir.path().join("data");
        // the shell ends the server when its standard input closes: when this process ends
        let script = format!(
            "'{postgres}' -D '{data}' -p {port} -k '{sockets}' -c listen_addresses=127.0.0.1 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=300 >>'{log}' 2>&1 & pid=$!; read cmd; kill -INT $pid; wait $pid; \
             [ \"$cmd\" = stop ] || rm -rf '{dir}'",
            postgres = server_bin("postgres").display(),
            data = data.display(),
            port = self.port,
            sockets = self.dir.path().display(),
            log = self.dir.path().join("server.log").display(),
            dir = self.dir.path().display(),
        );
        let mut child = as_server_user(Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting postgres")?;
        let stdin = child.stdin.take().context("the server's pipe")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() || self.sql("SELECT 1").is_err()
        {
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                bail!("postgres did not start on port {}: {log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(mut running) = self.running.lock() {
            *running = Some((child, stdin));
        }
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

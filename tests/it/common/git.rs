//! Real git servers on loopback for the repository tests: `git daemon`
//! (git://) and git's smart HTTP (`git http-backend` behind lighttpd), both
//! serving the bare repositories under one directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use super::{free_port, require, run_ok, wait_for_port};

/// The token the private URLs ask for.
pub const PRIVATE_TOKEN: &str = "glpat-course-deploy-token-0123";

/// `git daemon` and lighttpd + `git http-backend` over one directory of bare repositories.
pub struct GitServer {
    /// Where the bare repositories are.
    pub root: PathBuf,
    /// The git:// port.
    pub daemon_port: u16,
    /// The http:// port.
    pub http_port: u16,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

/// git's own directory of helper programs (`git-http-backend`).
fn git_exec_path() -> PathBuf {
    let out = run_ok(Command::new("git").arg("--exec-path"));
    PathBuf::from(out.trim())
}

impl GitServer {
    /// Starts both servers.
    pub fn start() -> Self {
        require("git");
        require("lighttpd");
        require("htpasswd");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("repos");
        std::fs::create_dir_all(&root).unwrap();
        let daemon_port = free_port();
        let daemon = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                &format!("--port={daemon_port}"),
            ])
            .arg(format!("--base-path={}", root.display()))
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let http_port = free_port();
        let http = Self::lighttpd(dir.path(), &root, http_port);
        wait_for_port(daemon_port, "git daemon");
        wait_for_port(http_port, "lighttpd");
        Self {
            root,
            daemon_port,
            http_port,
            children: vec![daemon, http],
            _dir: dir,
        }
    }

    /// lighttpd running `git http-backend` as CGI under `/git/`.
    fn lighttpd(dir: &Path, root: &Path, port: u16) -> Child {
        let backend = git_exec_path().join("git-http-backend");
        let config = format!(
            r#"server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.modules = ("mod_alias", "mod_cgi", "mod_setenv", "mod_auth", "mod_authn_file")
server.errorlog = "{dir}/lighttpd-error.log"
auth.backend = "htpasswd"
auth.backend.htpasswd.userfile = "{dir}/htpasswd"
alias.url = ("/git/" => "{backend}/", "/private/" => "{backend}/")
$HTTP["url"] =~ "^/(git|private)/" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
$HTTP["url"] =~ "^/private/" {{
  auth.require = ("" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
}}
"#,
            root = root.display(),
            dir = dir.display(),
            backend = backend.display(),
        );
        let htpasswd = run_ok(Command::new("htpasswd").args(["-nbm", "oauth2", PRIVATE_TOKEN]));
        std::fs::write(dir.join("htpasswd"), htpasswd.trim()).unwrap();
        let path = dir.join("lighttpd.conf");
        std::fs::write(&path, config).unwrap();
        Command::new("lighttpd")
            .arg("-D")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("lighttpd starts")
    }

    /// The git:// URL of a repository.
    pub fn git_url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}.git", self.daemon_port)
    }

    /// The http:// URL of a repository that asks for [`PRIVATE_TOKEN`] (user `oauth2`).
    pub fn private_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/private/{name}.git", self.http_port)
    }

    /// The http:// URL of a repository.
    pub fn http_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/git/{name}.git", self.http_port)
    }

    /// A new repository served by both servers, with a work tree to commit in.
    pub fn repo(&self, name: &str) -> TestRepo {
        let bare = self.root.join(format!("{name}.git"));
        git(
            &self.root,
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        git(&bare, &["config", "http.receivepack", "false"]);
        let work = self.root.join(format!("{name}.work"));
        git(
            &self.root,
            &["init", "-q", "-b", "main", &format!("{name}.work")],
        );
        TestRepo {
            work,
            bare,
            time: 1_760_000_000,
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// git in `dir` with a fixed identity, and no user or system configuration.
fn git_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Teacher")
        .env("GIT_AUTHOR_EMAIL", "teacher@example.org")
        .env("GIT_COMMITTER_NAME", "Teacher")
        .env("GIT_COMMITTER_EMAIL", "teacher@example.org")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    command
}

/// Runs git in `dir` with a fixed identity; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(git_command(dir, args))
}

/// A repository: a work tree whose commits are pushed to the served bare one.
pub struct TestRepo {
    /// The work tree.
    pub work: PathBuf,
    /// The served bare repository.
    pub bare: PathBuf,
    time: i64,
}

impl TestRepo {
    /// Writes a file (creating its directories), executable or not.
    pub fn write(&self, path: &str, content: &str, executable: bool) -> &Self {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    /// Commits everything at a fixed, increasing time; pushes the branch and tags; returns the commit.
    pub fn commit(&mut self, message: &str) -> String {
        self.time += 3600;
        let date = format!("{} +0000", self.time);
        git(&self.work, &["add", "-A"]);
        run_ok(
            git_command(&self.work, &["commit", "-q", "-m", message])
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date),
        );
        self.push();
        git(&self.work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Pushes every branch and tag to the served repository.
    pub fn push(&self) {
        let bare = self.bare.display().to_string();
        git(&self.work, &["push", "-q", "--force", &bare, "--all"]);
        git(&self.work, &["push", "-q", "--force", &bare, "--tags"]);
    }

    /// Runs git in the work tree.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }
}

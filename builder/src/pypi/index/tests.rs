//! End-to-end tests of the index client: `file://` indexes, find-links directories, and
//! an HTTP index served locally (credentials, PEP 658 metadata, the cache, revalidation).

use std::{io::Write as _, str::FromStr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::*;

fn name(s: &str) -> PackageName {
    PackageName::from_str(s).unwrap()
}

fn wheel_bytes(project: &str, version: &str, requires: &[&str]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file(format!("{project}-{version}.dist-info/METADATA"), options)
        .unwrap();
    write!(
        zip,
        "Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
    )
    .unwrap();
    for r in requires {
        writeln!(zip, "Requires-Dist: {r}").unwrap();
    }
    write!(zip, "\nThe description.\nRequires-Dist: not-a-header\n").unwrap();
    zip.start_file(format!("{project}/__init__.py"), options)
        .unwrap();
    zip.finish().unwrap().into_inner()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `file://` index with `demo` 1.0 (hash in its page) and a find-links directory with `other`; returns the wheel of `demo`.
fn local_fixture(root: &Path, links: &Path) -> Vec<u8> {
    let files_dir = root.join("files");
    let project_dir = root.join("simple/demo");
    std::fs::create_dir_all(&files_dir).unwrap();
    std::fs::create_dir_all(&project_dir).unwrap();
    let wheel = wheel_bytes("demo", "1.0", &["dep>=1"]);
    std::fs::write(files_dir.join("demo-1.0-py3-none-any.whl"), &wheel).unwrap();
    let html = format!(
        "<a href=\"../../files/demo-1.0-py3-none-any.whl#sha256={}\">w</a>",
        sha(&wheel)
    );
    std::fs::write(project_dir.join("index.html"), html).unwrap();
    std::fs::create_dir_all(links).unwrap();
    std::fs::write(
        links.join("other-2.0-py3-none-any.whl"),
        wheel_bytes("other", "2.0", &[]),
    )
    .unwrap();
    std::fs::write(links.join("other-1.0.tar.gz"), b"sdist").unwrap();
    std::fs::write(links.join("unrelated-1.0-py3-none-any.whl"), b"x").unwrap();
    std::fs::write(links.join("notes.txt"), b"x").unwrap();
    wheel
}

#[tokio::test]
async fn file_index_and_find_links_dir() {
    let root = tempfile::tempdir().unwrap();
    let links = root.path().join("links");
    let wheel = local_fixture(root.path(), &links);
    let config = IndexConfig {
        index_url: Url::from_directory_path(root.path().join("simple")).unwrap(),
        extra_index_urls: vec![],
        find_links: vec![FindLinks::Dir(links.clone())],
        no_index: false,
        allowed_hosts: None,
    };
    let cache = tempfile::tempdir().unwrap();
    let index = Index::new(config, cache.path()).unwrap();
    let demo = index.files(&name("demo")).await.unwrap();
    assert_eq!(demo.len(), 1);
    assert!(demo[0].index.is_some() && demo[0].sha256.is_some());
    let metadata = index.metadata(&demo[0]).await.unwrap();
    assert_eq!(metadata.requires_dist[0].name.as_ref(), "dep");
    assert!(cache
        .path()
        .join(format!("pypi/wheels/{}.whl", sha(&wheel)))
        .is_file());

    let other = index.files(&name("other")).await.unwrap();
    let names: Vec<&str> = other.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(names, ["other-1.0.tar.gz", "other-2.0-py3-none-any.whl"]);
    assert!(other.iter().all(|f| f.index.is_none()));
    let wheel_file = &other[1];
    let path = index
        .download(&wheel_file.url, &wheel_file.filename, None)
        .await
        .unwrap();
    assert_eq!(path, links.join("other-2.0-py3-none-any.whl"));
    assert_eq!(
        index
            .metadata(wheel_file)
            .await
            .unwrap()
            .version
            .to_string(),
        "2.0"
    );
    assert!(matches!(
        index.metadata(&other[0]).await,
        Err(PypiError::Unsupported { .. })
    ));
    match index.files(&name("missing")).await {
        Err(PypiError::NotFound {
            package, indexes, ..
        }) => {
            assert_eq!(package, "missing");
            assert!(indexes.contains("links"), "{indexes}");
        }
        other => panic!("{other:?}"),
    }
}

/// A route of the test server: status, headers, body.
type Route = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// A request the test server received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    authorization: Option<String>,
    if_none_match: Option<String>,
}

/// Serves `routes` over HTTP/1.1 on 127.0.0.1 (404 elsewhere; 304 when an ETag matches).
async fn serve(routes: HashMap<String, Route>) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let routes = Arc::new(routes);
    let recorded = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, routes.clone(), recorded.clone()));
        }
    });
    (format!("127.0.0.1:{port}"), hits)
}

async fn answer(
    mut stream: TcpStream,
    routes: Arc<HashMap<String, Route>>,
    hits: Arc<Mutex<Vec<Hit>>>,
) {
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buffer[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
    let header = |wanted: &str| {
        text.split("\r\n").find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.eq_ignore_ascii_case(wanted).then(|| v.trim().to_string())
        })
    };
    let hit = Hit {
        path: path.clone(),
        authorization: header("authorization"),
        if_none_match: header("if-none-match"),
    };
    hits.lock().unwrap().push(hit.clone());
    let (status, headers, body) = match routes.get(&path) {
        Some((_, headers, _))
            if hit.if_none_match.is_some()
                && headers
                    .iter()
                    .any(|(k, v)| *k == "ETag" && Some(v) == hit.if_none_match.as_ref()) =>
        {
            (304, vec![], vec![])
        }
        Some(route) => route.clone(),
        None => (404, vec![], b"not found".to_vec()),
    };
    let mut head = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn count(hits: &Mutex<Vec<Hit>>, path: &str) -> usize {
    hits.lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == path)
        .count()
}

/// The routes of an HTML index of `demo` 1.0 offering PEP 658 metadata, and of a wheel whose hash is wrong.
fn metadata_routes(wheel: &[u8]) -> HashMap<String, Route> {
    let page = format!(
        "<a href=\"../../files/demo-1.0-py3-none-any.whl#sha256={}\" data-core-metadata=\"true\" \
         data-requires-python=\"&gt;=3.8\">demo-1.0-py3-none-any.whl</a>",
        sha(wheel)
    );
    let html = vec![
        ("Content-Type", "text/html".to_string()),
        ("Cache-Control", "max-age=600, public".to_string()),
    ];
    HashMap::from([
        ("/simple/demo/".to_string(), (200, html, page.into_bytes())),
        (
            "/files/demo-1.0-py3-none-any.whl.metadata".to_string(),
            (
                200,
                vec![],
                b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: from-658\n"
                    .to_vec(),
            ),
        ),
        (
            "/files/demo-1.0-py3-none-any.whl".to_string(),
            (200, vec![], wheel.to_vec()),
        ),
        (
            "/files/bad-1.0-py3-none-any.whl".to_string(),
            (200, vec![], b"not the hash".to_vec()),
        ),
    ])
}

#[tokio::test]
async fn http_index_with_metadata_and_cache() {
    let wheel = wheel_bytes("demo", "1.0", &["from-wheel"]);
    let (host, hits) = serve(metadata_routes(&wheel)).await;
    let config = IndexConfig {
        index_url: Url::parse(&format!("http://user:s3cret@{host}/simple/")).unwrap(),
        extra_index_urls: vec![Url::parse(&format!("http://{host}/extra")).unwrap()],
        find_links: vec![],
        no_index: false,
        allowed_hosts: None,
    };
    let cache = tempfile::tempdir().unwrap();
    let index = Index::new(config.clone(), cache.path()).unwrap();
    let files = index.files(&name("demo")).await.unwrap();
    assert_eq!(files.len(), 1);
    let file = &files[0];
    assert!(file.has_metadata && file.requires_python.is_some());
    assert!(!format!("{file:?}").contains("s3cret"));
    assert_eq!(
        file.url.as_str(),
        format!("http://{host}/files/demo-1.0-py3-none-any.whl")
    );
    {
        let hits = hits.lock().unwrap();
        let page_hit = hits.iter().find(|h| h.path == "/simple/demo/").unwrap();
        assert!(page_hit
            .authorization
            .as_deref()
            .unwrap()
            .starts_with("Basic "));
        assert!(hits.iter().any(|h| h.path == "/extra/demo/"));
    }
    let metadata = index.metadata(file).await.unwrap();
    assert_eq!(metadata.requires_dist[0].name.as_ref(), "from-658");
    assert_eq!(count(&hits, "/files/demo-1.0-py3-none-any.whl"), 0);
    let again = second_client(&config, cache.path(), file, &wheel, &hits).await;

    // 404 everywhere: NotFound, no credentials shown.
    let err = again.files(&name("missing")).await.unwrap_err();
    assert!(matches!(err, PypiError::NotFound { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {again:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("/extra"),
        "{shown}"
    );

    check_hash_mismatch(&again, &host, cache.path(), &wheel).await;
}

/// A second client over the same cache asks the server nothing.
async fn second_client(
    config: &IndexConfig,
    cache: &Path,
    file: &DistFile,
    wheel: &[u8],
    hits: &Mutex<Vec<Hit>>,
) -> Index {
    let again = Index::new(config.clone(), cache).unwrap();
    let files = again.files(&name("demo")).await.unwrap();
    again.metadata(&files[0]).await.unwrap();
    assert_eq!(count(hits, "/simple/demo/"), 1);
    assert_eq!(count(hits, "/files/demo-1.0-py3-none-any.whl.metadata"), 1);
    let path = again
        .download(&file.url, &file.filename, file.sha256.as_deref())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), wheel);
    again
        .download(&file.url, &file.filename, file.sha256.as_deref())
        .await
        .unwrap();
    assert_eq!(count(hits, "/files/demo-1.0-py3-none-any.whl"), 1);
    again
}

/// A hash mismatch leaves nothing in the cache.
async fn check_hash_mismatch(index: &Index, host: &str, cache: &Path, wheel: &[u8]) {
    let bad = Url::parse(&format!("http://{host}/files/bad-1.0-py3-none-any.whl")).unwrap();
    let wrong = "0".repeat(64);
    let err = index
        .download(&bad, "bad-1.0-py3-none-any.whl", Some(&wrong))
        .await
        .unwrap_err();
    match err {
        PypiError::HashMismatch {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, "bad-1.0-py3-none-any.whl");
            assert_eq!(expected, wrong);
            assert_eq!(actual, sha(b"not the hash"));
        }
        other => panic!("{other:?}"),
    }
    let left: Vec<_> = std::fs::read_dir(cache.join("pypi/wheels"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from(format!("{}.whl", sha(wheel)))]
    );
}

#[tokio::test]
async fn json_pages_revalidate_and_wheels_give_metadata() {
    let wheel = wheel_bytes("demo", "2.0", &["from-wheel"]);
    let page = format!(
        r#"{{"meta": {{"api-version": "1.0"}}, "name": "demo", "files": [{{"filename": "demo-2.0-py3-none-any.whl",
           "url": "/files/demo-2.0-py3-none-any.whl", "hashes": {{"sha256": "{}"}}}}]}}"#,
        sha(&wheel)
    );
    let json = vec![
        (
            "Content-Type",
            "application/vnd.pypi.simple.v1+json".to_string(),
        ),
        ("ETag", "\"v1\"".to_string()),
    ];
    let routes = HashMap::from([
        ("/simple/demo/".to_string(), (200, json, page.into_bytes())),
        (
            "/files/demo-2.0-py3-none-any.whl".to_string(),
            (200, vec![], wheel),
        ),
    ]);
    let (host, hits) = serve(routes).await;
    let config = IndexConfig {
        index_url: Url::parse(&format!("http://{host}/simple")).unwrap(),
        ..IndexConfig::default()
    };
    let cache = tempfile::tempdir().unwrap();
    let index = Index::new(config.clone(), cache.path()).unwrap();
    let files = index.files(&name("demo")).await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(!files[0].has_metadata);
    let metadata = index.metadata(&files[0]).await.unwrap();
    assert_eq!(metadata.requires_dist[0].name.as_ref(), "from-wheel");
    assert_eq!(count(&hits, "/files/demo-2.0-py3-none-any.whl"), 1);

    let again = Index::new(config, cache.path()).unwrap();
    let files = again.files(&name("demo")).await.unwrap();
    assert_eq!(files.len(), 1);
    let hits = hits.lock().unwrap();
    let pages: Vec<&Hit> = hits.iter().filter(|h| h.path == "/simple/demo/").collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(pages[1].if_none_match.as_deref(), Some("\"v1\""));
    assert!(pages[0].authorization.is_none());
}

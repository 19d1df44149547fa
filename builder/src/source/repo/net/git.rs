//! Git's own protocol (`git://`, as `git daemon` serves it): one TCP
//! connection per operation, each read bounded by the idle timeout and the
//! deadline.

use std::{
    io::{self, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    sync::Arc,
};

use git2::transport::SmartSubtransportStream;
use url::Url;

use super::{silent, Session};

/// git's default port.
const PORT: u16 = 9418;

/// Connects to the repository's daemon and asks for upload-pack.
pub(super) fn connect(
    session: Arc<Session>,
    url: &Url,
) -> Result<Box<dyn SmartSubtransportStream>, git2::Error> {
    let fail = |e: io::Error| git2::Error::from_str(&e.to_string());
    let host = url.host_str().unwrap_or_default();
    let port = url.port().unwrap_or(PORT);
    let wait = session.spending.wait().map_err(fail)?;
    let addresses = (host, port)
        .to_socket_addrs()
        .map_err(|e| fail(io::Error::other(format!("cannot resolve {host}: {e}"))))?;
    let mut last = io::Error::other(format!("{host} has no address"));
    for address in addresses {
        match TcpStream::connect_timeout(&address, wait) {
            Ok(mut stream) => {
                let virtual_host = match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_string(),
                };
                let request = format!("git-upload-pack {}\0host={virtual_host}\0", url.path());
                stream
                    .set_write_timeout(Some(wait))
                    .and_then(|()| stream.write_all(&pkt_line(&request)))
                    .map_err(|e| fail(silent(&session, e)))?;
                return Ok(Box::new(Daemon { stream, session }));
            }
            Err(e) => last = silent(&session, e),
        }
    }
    Err(fail(last))
}

/// A pkt-line: four hex digits of length, then the payload.
fn pkt_line(payload: &str) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload.as_bytes());
    line
}

/// The connection, metered.
struct Daemon {
    stream: TcpStream,
    session: Arc<Session>,
}

impl Read for Daemon {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = self.session.spending.wait()?;
        self.stream.set_read_timeout(Some(wait))?;
        let n = self
            .stream
            .read(buf)
            .map_err(|e| silent(&self.session, e))?;
        self.session.spending.received(n)?;
        Ok(n)
    }
}

impl Write for Daemon {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let wait = self.session.spending.wait()?;
        self.stream.set_write_timeout(Some(wait))?;
        self.stream
            .write(data)
            .map_err(|e| silent(&self.session, e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkt_lines_carry_their_length() {
        assert_eq!(
            super::pkt_line("git-upload-pack /x\0host=h\0"),
            b"001egit-upload-pack /x\0host=h\0"
        );
    }
}

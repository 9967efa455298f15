//! Spreading one blob copy over two cores.
//!
//! A digest-verified transform hashes the input (SHA-256), transforms it (for encryption,
//! AES-CTR + HMAC-SHA256) and hashes the output (SHA-256): four passes over every byte, each
//! about as expensive as the next. Splitting one pass over threads does not pay; running the
//! passes in stages does. [`read_ahead`] reads (and verifies) the source on one thread while the
//! caller transforms; [`write_behind`] hashes and writes the output on another. Buffers move
//! through bounded channels, so memory stays at a few chunks whatever the blob size.

use std::io::{self, Read, Write};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};

/// Size of one buffer passed between stages.
pub const CHUNK: usize = 1024 * 1024;
/// Buffers in flight per direction.
const DEPTH: usize = 4;

/// Runs `f` with a reader that yields `reader`'s bytes, read on a scoped thread ahead of the
/// consumer. Errors of `reader` (a digest mismatch at the end) arrive in order, after the bytes
/// that preceded them.
pub fn read_ahead<R, T>(reader: R, f: impl FnOnce(&mut dyn Read) -> T) -> T
where
    R: Read + Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let (back_tx, back_rx) = channel::<Vec<u8>>();
        s.spawn(move || produce(reader, tx, back_rx));
        let mut r = ChannelReader {
            rx,
            back: back_tx,
            cur: Vec::new(),
            pos: 0,
            done: false,
        };
        f(&mut r)
        // Dropping `r` closes the channel, so the producer stops at its next send.
    })
}

fn produce<R: Read>(mut reader: R, tx: SyncSender<io::Result<Vec<u8>>>, back: Receiver<Vec<u8>>) {
    loop {
        let mut buf = back.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let result = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        buf.truncate(filled);
        let end = filled == 0 || result.is_err();
        if filled > 0 && tx.send(Ok(buf)).is_err() {
            return;
        }
        if let Err(e) = result {
            let _ = tx.send(Err(e));
            return;
        }
        if end {
            let _ = tx.send(Ok(Vec::new()));
            return;
        }
    }
}

struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    back: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let next = self
                .rx
                .recv()
                .map_err(|_| io::Error::other("read-ahead thread ended early"))??;
            if next.is_empty() {
                self.done = true;
                return Ok(0);
            }
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.back.send(old);
            self.pos = 0;
        }
        let n = (self.cur.len() - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `f` with a writer whose bytes are written to `writer` on a scoped thread. Returns
/// `f`'s result and `writer` once everything was written and flushed; a write error of
/// `writer` fails the whole call (and is reported to `f` at its next write when possible).
pub fn write_behind<W, T, E>(
    writer: W,
    f: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<(T, W), WriteBehindError<E>>
where
    W: Write + Send,
{
    std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let (back_tx, back_rx) = channel::<Vec<u8>>();
        let (err_tx, err_rx) = channel::<io::Error>();
        let handle = s.spawn(move || consume(writer, rx, back_tx, err_tx));
        let mut w = ChannelWriter {
            tx: Some(tx),
            back: back_rx,
            errors: err_rx,
            buf: Vec::with_capacity(CHUNK),
        };
        let result = f(&mut w);
        let flushed = w.finish();
        let joined = handle
            .join()
            .map_err(|_| WriteBehindError::Io(io::Error::other("writer thread panicked")))?;
        let t = result.map_err(WriteBehindError::Inner)?;
        flushed.map_err(WriteBehindError::Io)?;
        let writer = joined.map_err(WriteBehindError::Io)?;
        Ok((t, writer))
    })
}

/// Failure of [`write_behind`].
#[derive(Debug)]
pub enum WriteBehindError<E> {
    /// The closure failed.
    Inner(E),
    /// Writing to the inner writer failed.
    Io(io::Error),
}

fn consume<W: Write>(
    mut writer: W,
    rx: Receiver<Vec<u8>>,
    back: Sender<Vec<u8>>,
    errors: Sender<io::Error>,
) -> io::Result<W> {
    for mut buf in rx {
        if let Err(e) = writer.write_all(&buf) {
            let _ = errors.send(io::Error::new(e.kind(), e.to_string()));
            return Err(e);
        }
        buf.clear();
        let _ = back.send(buf);
    }
    writer.flush()?;
    Ok(writer)
}

struct ChannelWriter {
    tx: Option<SyncSender<Vec<u8>>>,
    back: Receiver<Vec<u8>>,
    errors: Receiver<io::Error>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if let Ok(e) = self.errors.try_recv() {
            return Err(e);
        }
        let next = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("writer closed"))?;
        tx.send(full).map_err(|_| {
            self.errors
                .try_recv()
                .unwrap_or_else(|_| io::Error::other("writer thread ended early"))
        })
    }

    fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx = None;
        Ok(())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (CHUNK - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ahead_passes_bytes_and_errors_in_order() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| i as u8).collect();
        let out = read_ahead(&data[..], |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .expect("read");
        assert_eq!(out, data);
        struct FailsAtEnd(Vec<u8>, usize);
        impl Read for FailsAtEnd {
            fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
                if self.1 == self.0.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "digest mismatch",
                    ));
                }
                let n = (self.0.len() - self.1).min(b.len());
                b[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let (seen, err) = read_ahead(FailsAtEnd(data.clone(), 0), |r| {
            let mut v = Vec::new();
            let e = r.read_to_end(&mut v).expect_err("fails");
            (v.len(), e)
        });
        assert_eq!(seen, data.len());
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The consumer may stop early without hanging.
        let first = read_ahead(&data[..], |r| {
            let mut b = [0u8; 10];
            r.read(&mut b).expect("read")
        });
        assert!(first > 0);
    }

    #[test]
    fn write_behind_writes_everything_and_reports_errors() {
        let data: Vec<u8> = (0..(2 * CHUNK + 5)).map(|i| (i * 3) as u8).collect();
        let ((), out) = write_behind(Vec::new(), |w| w.write_all(&data)).expect("ok");
        assert_eq!(out, data);
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let r = write_behind(Full, |w| w.write_all(&data));
        assert!(r.is_err());
        let r: Result<((), Vec<u8>), _> =
            write_behind(Vec::new(), |_| Err::<(), _>("handler failed"));
        assert!(matches!(r, Err(WriteBehindError::Inner("handler failed"))));
    }
}

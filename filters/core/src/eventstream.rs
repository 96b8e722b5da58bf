//! AWS event-stream framing (`application/vnd.amazon.eventstream`, Bedrock's ConverseStream and
//! InvokeModelWithResponseStream), incrementally: frames split anywhere across chunks, CRC32
//! checked on the prelude and on the whole message, sizes bounded. A corrupt frame is an error at
//! once, never a wait for bytes that will not come.
//!
//! A frame: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes, the headers,
//! the payload, CRC32 of everything before it. A header: name length (u8), name, type (u8),
//! value (by type: bool true/false carry none, byte 1, short 2, int 4, long 8, bytes and string
//! a u16 length then the bytes, timestamp 8, uuid 16).

/// Longest frame accepted (Bedrock's are a few KB; a long answer is many frames).
pub const MAX_FRAME_BYTES: usize = 16 << 20;

/// One decoded frame: its string headers (`:event-type`, `:message-type`, `:exception-type`,
/// `:content-type`) and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    PreludeCrc,
    MessageCrc,
    Length(usize),
    Header(&'static str),
    /// The stream ended inside a frame.
    Truncated,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            FrameError::PreludeCrc => write!(f, "event-stream prelude CRC mismatch"),
            FrameError::MessageCrc => write!(f, "event-stream message CRC mismatch"),
            FrameError::Length(n) => write!(f, "event-stream frame of {n} bytes"),
            FrameError::Header(why) => write!(f, "event-stream header: {why}"),
            FrameError::Truncated => write!(f, "event-stream ended inside a frame"),
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), table-driven.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

// Evaluated at compile time: an index out of bounds would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        let entry = CRC_TABLE
            .get(((c ^ u32::from(b)) & 0xff) as usize)
            .copied()
            .unwrap_or(0);
        c = entry ^ (c >> 8);
    }
    !c
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Frames from a byte stream that arrives in pieces.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// Appends the frames completed by `chunk` to `out`; an error comes after the frames
    /// before it. After an error the decoder stays failed.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if self.failed {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            match frame_at(&self.buf, at) {
                Ok(Some((frame, next))) => {
                    out.push(frame);
                    at = next;
                }
                Ok(None) => break,
                Err(e) => {
                    self.failed = true;
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
        self.buf.drain(..at);
        Ok(())
    }

    /// The stream ended: bytes of an unfinished frame are an error.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if !self.failed && !self.buf.is_empty() {
            self.failed = true;
            self.buf.clear();
            return Err(FrameError::Truncated);
        }
        Ok(())
    }
}

/// The frame starting at `at`, if complete (`None`: more bytes needed). The prelude is checked
/// as soon as its 12 bytes are there, so a corrupt length never makes the decoder wait.
fn frame_at(b: &[u8], at: usize) -> Result<Option<(Frame, usize)>, FrameError> {
    let Some(prelude) = b.get(at..at + 12) else {
        return Ok(None);
    };
    let total = be32(prelude, 0).unwrap_or(0) as usize;
    let headers_len = be32(prelude, 4).unwrap_or(0) as usize;
    if crc32(prelude.get(..8).unwrap_or_default()) != be32(prelude, 8).unwrap_or(0) {
        return Err(FrameError::PreludeCrc);
    }
    if !(16..=MAX_FRAME_BYTES).contains(&total) || headers_len > total - 16 {
        return Err(FrameError::Length(total));
    }
    let Some(msg) = b.get(at..at + total) else {
        return Ok(None);
    };
    let (body, crc) = msg.split_at(total - 4);
    if crc32(body) != be32(crc, 0).unwrap_or(0) {
        return Err(FrameError::MessageCrc);
    }
    let headers = parse_headers(body.get(12..12 + headers_len).unwrap_or_default())?;
    let payload = body.get(12 + headers_len..).unwrap_or_default().to_vec();
    Ok(Some((Frame { headers, payload }, at + total)))
}

fn parse_headers(mut b: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut out = Vec::new();
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>, FrameError> {
        let (head, rest) = (b.get(..n), b.get(n..));
        match (head, rest) {
            (Some(h), Some(r)) => {
                let h = h.to_vec();
                *b = r;
                Ok(h)
            }
            _ => Err(FrameError::Header("truncated")),
        }
    };
    while !b.is_empty() {
        let n = take(&mut b, 1)?.first().copied().unwrap_or(0) as usize;
        let name = String::from_utf8(take(&mut b, n)?).map_err(|_| FrameError::Header("name"))?;
        let kind = take(&mut b, 1)?.first().copied().unwrap_or(255);
        let value = match kind {
            0 => "true".to_string(),
            1 => "false".to_string(),
            2 => {
                take(&mut b, 1)?;
                String::new()
            }
            3 => {
                take(&mut b, 2)?;
                String::new()
            }
            4 => {
                take(&mut b, 4)?;
                String::new()
            }
            5 | 8 => {
                take(&mut b, 8)?;
                String::new()
            }
            6 | 7 => {
                let len = take(&mut b, 2)?;
                let len = usize::from(u16::from_be_bytes([
                    len.first().copied().unwrap_or(0),
                    len.get(1).copied().unwrap_or(0),
                ]));
                let v = take(&mut b, len)?;
                if kind == 7 {
                    String::from_utf8(v).map_err(|_| FrameError::Header("value"))?
                } else {
                    String::new()
                }
            }
            9 => {
                take(&mut b, 16)?;
                String::new()
            }
            _ => return Err(FrameError::Header("type")),
        };
        out.push((name, value));
    }
    Ok(out)
}

/// AWS event-stream frames as named events for `stream::SseStream`: an event frame is named by
/// its `:event-type`; an exception frame (which arrives inside an HTTP 200) is named
/// `!exception:<:exception-type>`, an error frame `!error:<:error-code>`. The data is the
/// payload as UTF-8 (JSON).
#[derive(Debug, Default)]
pub struct FrameEvents(FrameDecoder);

/// The event name prefix of exception and error frames.
pub const EXCEPTION: &str = "!exception:";
pub const ERROR: &str = "!error:";

fn as_event(f: Frame) -> Result<crate::sse::SseEvent, String> {
    let name = match f.header(":message-type") {
        Some("exception") => format!(
            "{EXCEPTION}{}",
            f.header(":exception-type").unwrap_or("unknown")
        ),
        Some("error") => format!("{ERROR}{}", f.header(":error-code").unwrap_or("unknown")),
        _ => f.header(":event-type").unwrap_or_default().to_string(),
    };
    let data =
        String::from_utf8(f.payload).map_err(|_| "an event-stream payload that is not UTF-8")?;
    Ok(crate::sse::SseEvent {
        event: Some(name),
        data,
    })
}

impl crate::stream::Framing for FrameEvents {
    fn feed(&mut self, chunk: &[u8], events: &mut Vec<crate::sse::SseEvent>) -> Result<(), String> {
        let mut frames = Vec::new();
        let framing = self.0.feed(chunk, &mut frames).map_err(|e| e.to_string());
        for f in frames {
            events.push(as_event(f)?);
        }
        framing
    }
    fn finish(&mut self, _events: &mut Vec<crate::sse::SseEvent>) -> Result<(), String> {
        self.0.finish().map_err(|e| e.to_string())
    }
}

/// Encodes a frame with string headers (the mock provider and the tests write frames with it).
pub fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (k, v) in headers {
        h.push(u8::try_from(k.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(k.as_bytes());
        h.push(7);
        h.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(v.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub use crate::base64::decode as base64_decode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let a = encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":message-type", "event"),
            ],
            br#"{"delta":{"text":"hi"},"p":"abcdefgh"}"#,
        );
        let b = encode(
            &[(":event-type", "messageStop")],
            br#"{"stopReason":"end_turn"}"#,
        );
        let all = [a.clone(), b.clone()].concat();
        for cut in 0..all.len() {
            for cut2 in cut..all.len() {
                let mut d = FrameDecoder::default();
                let mut frames = Vec::new();
                d.feed(&all[..cut], &mut frames).unwrap();
                d.feed(&all[cut..cut2], &mut frames).unwrap();
                d.feed(&all[cut2..], &mut frames).unwrap();
                d.finish().unwrap();
                assert_eq!(frames.len(), 2);
                assert_eq!(frames[0].header(":event-type"), Some("contentBlockDelta"));
                assert_eq!(frames[1].payload, br#"{"stopReason":"end_turn"}"#);
            }
        }
    }

    #[test]
    fn corruption_is_an_error_at_once() {
        let f = encode(&[(":event-type", "x")], b"{}");
        for i in 0..f.len() {
            let mut bad = f.clone();
            bad[i] ^= 0x40;
            let mut d = FrameDecoder::default();
            // The whole frame is there: any flipped bit fails a CRC (or a length) now.
            assert!(d.feed(&bad, &mut Vec::new()).is_err(), "byte {i}");
        }
        // A corrupt prelude fails with only its 12 bytes in, not after waiting for 16 MB.
        let mut bad = f.clone();
        bad[1] = 0x7f;
        assert!(FrameDecoder::default()
            .feed(&bad[..12], &mut Vec::new())
            .is_err());
        let mut d = FrameDecoder::default();
        d.feed(&f[..f.len() - 1], &mut Vec::new()).unwrap();
        assert_eq!(d.finish(), Err(FrameError::Truncated));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk/+w==").unwrap(), [b'h', b'i', 0x3f, 0xfb]);
        assert!(base64_decode("a*b").is_none());
    }
}

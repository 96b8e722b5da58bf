//! Incremental server-sent-events framing on bytes.
//!
//! Events are separated by a blank line; lines end with `\n`, `\r\n` or `\r` (a `\r` at the end
//! of a chunk waits for the next byte). Data is decoded as UTF-8 only once an event is complete,
//! so a multi-byte character split across chunks is never a problem. Memory is bounded by the
//! largest single event (`max_event_bytes`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event's data or name is not UTF-8.
    InvalidUtf8,
    /// An event grew beyond the configured bound without ending.
    TooLarge(usize),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::InvalidUtf8 => write!(f, "an event is not valid UTF-8"),
            SseError::TooLarge(n) => write!(f, "an event is larger than {n} bytes"),
        }
    }
}

pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the line being read (no terminator).
    line: Vec<u8>,
    /// The previous byte was `\r`: a following `\n` belongs to the same terminator.
    after_cr: bool,
    event: Option<Vec<u8>>,
    data: Vec<u8>,
    has_data: bool,
    max_event_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: Vec::new(),
            has_data: false,
            max_event_bytes,
        }
    }

    /// Feeds bytes; returns the events completed by them, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest.first() == Some(&b'\n') {
                    rest = rest.get(1..).unwrap_or_default();
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(i) => {
                    let (head, tail) = rest.split_at(i);
                    self.line.extend_from_slice(head);
                    if tail.first() == Some(&b'\r') {
                        self.after_cr = true;
                    }
                    rest = tail.get(1..).unwrap_or_default();
                    self.end_line(&mut out)?;
                }
                None => {
                    self.line.extend_from_slice(rest);
                    rest = &[];
                }
            }
            if self.line.len() + self.data.len() > self.max_event_bytes {
                return Err(SseError::TooLarge(self.max_event_bytes));
            }
        }
        Ok(out)
    }

    /// Ends the stream: an unterminated last line and an event without its blank line are
    /// dispatched (lenient: servers that end without the final blank line are common).
    pub fn finish(&mut self) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            self.end_line(&mut out)?;
        }
        self.after_cr = false;
        self.dispatch(&mut out)?;
        Ok(out)
    }

    /// True when bytes of an unfinished event are held.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        !self.line.is_empty() || self.has_data || self.event.is_some()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            return self.dispatch(out);
        }
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let (f, v) = line.split_at(i);
                let v = v.get(1..).unwrap_or_default();
                (f, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line.as_slice(), &[][..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.to_vec()),
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let event = self.event.take();
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let data =
            String::from_utf8(std::mem::take(&mut self.data)).map_err(|_| SseError::InvalidUtf8)?;
        let event = match event {
            Some(e) => Some(String::from_utf8(e).map_err(|_| SseError::InvalidUtf8)?),
            None => None,
        };
        out.push(SseEvent { event, data });
        Ok(())
    }
}

/// Appends one `data:` event (the data must not contain line breaks: compact JSON never does).
pub fn write_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

/// Appends one named event (`event: <name>`, then its `data:`), as Anthropic's streams have.
pub fn write_event(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    write_data(out, data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parts: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for part in parts {
            out.extend(p.feed(part).unwrap());
        }
        out.extend(p.finish().unwrap());
        out
    }

    #[test]
    fn frames_with_every_line_ending() {
        for text in [
            "event: a\ndata: 1\n\ndata: 2\n\n",
            "event: a\r\ndata: 1\r\n\r\ndata: 2\r\n\r\n",
            "event: a\rdata: 1\r\rdata: 2\r\r",
        ] {
            let ev = all(&[text.as_bytes()]);
            assert_eq!(ev.len(), 2, "{text:?}");
            assert_eq!(ev[0].event.as_deref(), Some("a"));
            assert_eq!(ev[0].data, "1");
            assert_eq!(ev[1].event, None);
            assert_eq!(ev[1].data, "2");
        }
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let text = "event: x\r\ndata: {\"t\":\"héllo 😀\"}\r\n\r\n: comment\n\ndata: a\ndata: b\n\ndata:no-space\n\n";
        let whole = all(&[text.as_bytes()]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1].data, "a\nb");
        assert_eq!(whole[2].data, "no-space");
        let b = text.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                assert_eq!(
                    all(&[&b[..i], &b[i..j], &b[j..]]),
                    whole,
                    "split at {i},{j}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let text = "data: 1\r\n\r\ndata: 2\r\n\r\n";
        let parts: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        let ev = all(&parts);
        assert_eq!(
            ev.iter().map(|e| e.data.as_str()).collect::<Vec<_>>(),
            ["1", "2"]
        );
    }

    #[test]
    fn unterminated_last_event_is_dispatched_at_finish() {
        let ev = all(&[b"data: 1\n\ndata: 2"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1].data, "2");
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let mut p = SseParser::default();
        assert_eq!(p.feed(b"data: \xff\xfe\n\n"), Err(SseError::InvalidUtf8));
    }

    #[test]
    fn bounded() {
        let mut p = SseParser::new(16);
        assert!(p.feed(b"data: 0123456789").is_ok());
        assert_eq!(p.feed(b"0123456789"), Err(SseError::TooLarge(16)));
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(all(&[b"event: ping\n\n"]).is_empty());
    }
}

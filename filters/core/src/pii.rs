//! PII: detection (patterns narrowed by validators), actions (tokenize, redact, mask, hash,
//! block, allow), redaction of every text a provider sees, and exact re-hydration of
//! placeholders in answers, JSON and streamed.
//!
//! Person names without a model: configured dictionaries, names after an honorific
//! (`Mr`, `Mrs`, `Ms`, `Dr`, `Prof`, `Herr`, `Frau`...), and names after self-introductions
//! (`my name is`, `I am`, `signed`, `regards`). Nothing else guesses at names.

use crate::error::GatewayError;
use crate::sse::{self, SseParser};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A reversible placeholder, `[EMAIL_1]`, put back in the answer.
    Tokenize,
    /// An irreversible `[EMAIL]`.
    Redact,
    /// All but the last four letters and digits replaced by `*`.
    Mask,
    /// `[EMAIL:<HMAC-SHA256 prefix>]`, stable across requests for one secret.
    Hash,
    /// The request is refused (400) naming the types found.
    Block,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    None,
    Luhn,
    Ssn,
    Iban,
    Ipv4,
    Ipv6,
    Phone,
    /// A bare ten-digit North American number: only where no id word precedes it.
    BarePhone,
}

#[derive(Debug)]
struct Detector {
    kind: String,
    re: Regex,
    /// Capture group holding the value (0: the whole match).
    group: usize,
    check: Check,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustom {
    #[serde(rename = "type")]
    kind: String,
    pattern: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDictionary {
    #[serde(rename = "type")]
    kind: String,
    values: Vec<String>,
}

fn default_action() -> Action {
    Action::Tokenize
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPiiConfig {
    #[serde(default = "default_action")]
    default_action: Action,
    #[serde(default)]
    actions: BTreeMap<String, Action>,
    /// Only private and internal IP addresses count (10/8, 172.16/12, 192.168/16, 127/8,
    /// 169.254/16, 100.64/10, fc00::/7, fe80::/10, ::1).
    #[serde(default)]
    private_ips_only: bool,
    #[serde(default)]
    custom: Vec<RawCustom>,
    #[serde(default)]
    dictionaries: Vec<RawDictionary>,
    /// Key of the `hash` action (required when any type hashes).
    #[serde(default)]
    hash_secret: Option<String>,
    /// Also redact PII the model wrote on its own (JSON answers, and each streamed delta).
    #[serde(default)]
    scan_output: bool,
}

#[derive(Debug)]
pub struct Scanner {
    detectors: Vec<Detector>,
    /// All detectors at once: one pass tells which can match a text at all.
    set: RegexSet,
    default_action: Action,
    actions: BTreeMap<String, Action>,
    private_ips_only: bool,
    hash_secret: Vec<u8>,
    pub scan_output: bool,
    placeholder_like: Regex,
}

const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\\.?";

fn builtin() -> Vec<(&'static str, String, usize, Check)> {
    let date = format!(
        r"(\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:19|20)?\d{{2}}|(?:19|20)\d{{2}}-\d{{2}}-\d{{2}}|{MONTH} \d{{1,2}},? \d{{4}}|\d{{1,2}}\.? {MONTH} \d{{4}})"
    );
    vec![
        ("PRIVATE_KEY", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----".into(), 0, Check::None),
        ("URL_CREDENTIALS", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:[^\s/@]+@[^\s/?#]+".into(), 0, Check::None),
        ("JWT", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}".into(), 0, Check::None),
        ("AWS_ACCESS_KEY", r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b".into(), 0, Check::None),
        (
            "AWS_SECRET_KEY",
            r#"(?i:aws.{0,20}(?:secret|private).{0,20}?[=:]\s*["']?)([A-Za-z0-9/+=]{40})\b"#.into(),
            1,
            Check::None,
        ),
        ("GITHUB_TOKEN", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b".into(), 0, Check::None),
        ("SLACK_TOKEN", r"\bxox[abposr]-[A-Za-z0-9-]{10,}".into(), 0, Check::None),
        ("API_KEY", r"\bsk-(?:ant-[A-Za-z0-9_-]{20,}|proj-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})".into(), 0, Check::None),
        ("EMAIL", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b".into(), 0, Check::None),
        ("IBAN", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b".into(), 0, Check::Iban),
        ("CREDIT_CARD", r"\b\d(?:[ -]?\d){11,18}\b".into(), 0, Check::Luhn),
        ("US_SSN", r"\b\d{3}([- ])\d{2}[- ]\d{4}\b".into(), 0, Check::Ssn),
        ("MAC_ADDRESS", r"\b(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}\b|\b(?:[0-9A-Fa-f]{2}-){5}[0-9A-Fa-f]{2}\b".into(), 0, Check::None),
        ("IP_ADDRESS", r"\b(?:\d{1,3}\.){3}\d{1,3}\b".into(), 0, Check::Ipv4),
        ("IP_ADDRESS", r"(?:\b|::)[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\b|::)".into(), 0, Check::Ipv6),
        (
            "PHONE_NUMBER",
            // International (+ or 00), NANP ((415) 555-2671, 206.269.0743), national with a
            // trunk 0 ((0161) 496 0972, 03662 585178, 02 49 01 90 11, 0292018871); each with an
            // optional extension (x123, ext. 12).
            concat!(
                r"(?:(?:\+|\b00)[1-9]\d{0,2}[ .-]?(?:\(0\)[ .-]?|\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,5}",
                r"|\(\d{3}\)[ .-]?\d{3}[ .-]?\d{4}",
                r"|\b\d{3}[.-]\d{3}[.-]\d{4}",
                r"|\(0\d{1,5}\)[ .-]?\d{2,8}(?:[ .-]\d{2,5})?",
                r"|\b0[1-9]\d{0,4}[ /-]\d{3,8}(?:[ -]\d{2,5})?",
                r"|\b0[1-9](?:[ .]\d{2}){4}",
                r"|\b0[1-9]\d{8,9}",
                r"|\b00\d{8,13})",
                r"(?:\s?(?:x|ext\.?|#)\s?\d{1,6})?\b"
            )
            .into(),
            0,
            Check::Phone,
        ),
        (
            "PHONE_NUMBER",
            // NANP without separators: area code and exchange start with 2-9.
            r"\b[2-9]\d{2}[2-9]\d{6}\b".into(),
            0,
            Check::BarePhone,
        ),
        (
            "PHONE_NUMBER",
            r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|call me at|number is)\s*(?:no\.?|number)?\s*:?\s*)(\+?\(?\d[\d .()-]{6,18}\d)(?:\s*(?:x|ext\.?)\s*\d{1,6})?".into(),
            1,
            Check::Phone,
        ),
        (
            "DATE_OF_BIRTH",
            format!(r"(?i:\b(?:born(?: on)?|date of birth|d\.?o\.?b\.?|birthday|birth date|geboren(?: am)?|née? le)\s*(?:is|:|was)?\s*){date}"),
            1,
            Check::None,
        ),
        (
            "PERSON",
            r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sr|Sra)\.? (\p{Lu}\p{Ll}+(?:[ -]\p{Lu}\p{Ll}+){0,2})".into(),
            1,
            Check::None,
        ),
        (
            "PERSON",
            r"(?:(?i:my name is|i am|i'm|this is|signed|regards|sincerely),?\s+)(\p{Lu}\p{Ll}+(?: \p{Lu}\p{Ll}+){1,2})".into(),
            1,
            Check::None,
        ),
    ]
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A card number: 12 to 19 digits, a known issuer prefix, Luhn, and separators in the places
/// card numbers have them.
fn card_ok(s: &str) -> bool {
    let digits: Vec<u8> = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if !(12..=19).contains(&digits.len()) || !luhn(&digits) {
        return false;
    }
    let groups: Vec<usize> = s.split([' ', '-']).map(str::len).collect();
    if groups.len() > 1
        && !matches!(
            groups.as_slice(),
            [4, 4, 4, 4] | [4, 4, 4, 4, 1..=3] | [4, 6, 5] | [4, 6, 4] | [4, 4, 4]
        )
    {
        return false;
    }
    let p = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |a, d| a * 10 + u32::from(*d))
    };
    let len = digits.len();
    match p(1) {
        4 => matches!(len, 13 | 16 | 19), // Visa
        5 => {
            (51..=55).contains(&p(2)) && len == 16
                || (p(2) == 50 || (56..=59).contains(&p(2))) && len >= 12
        } // Mastercard, Maestro
        2 => (2221..=2720).contains(&p(4)) && len == 16, // Mastercard 2-series
        3 => {
            (matches!(p(2), 34 | 37) && len == 15)                                            // Amex
                || ((300..=305).contains(&p(3)) || matches!(p(2), 36 | 38 | 39)) && (14..=19).contains(&len) // Diners
                || p(2) == 35 && (16..=19).contains(&len) // JCB (its IIN block 35)
        }
        6 => {
            p(4) == 6011 || (644..=649).contains(&p(3)) || p(2) == 65                         // Discover
                || p(2) == 62                                                                 // UnionPay
                || matches!(p(2), 60 | 63 | 67 | 68 | 69) && len >= 12 // Maestro
        }
        _ => false,
    }
}

fn ssn_ok(s: &str) -> bool {
    let d: Vec<u32> = s
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if d.len() != 9 {
        return false;
    }
    let area = d.iter().take(3).fold(0, |a, x| a * 10 + x);
    let group = d.iter().skip(3).take(2).fold(0, |a, x| a * 10 + x);
    let serial = d.iter().skip(5).fold(0, |a, x| a * 10 + x);
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// IBAN lengths per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

fn iban_ok(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| *b != b' ').collect();
    let Some(country) = c.get(0..2).and_then(|x| std::str::from_utf8(x).ok()) else {
        return false;
    };
    if IBAN_LENGTHS
        .iter()
        .find(|(k, _)| *k == country)
        .map(|(_, l)| *l)
        != Some(c.len())
    {
        return false;
    }
    let rotated = c.iter().skip(4).chain(c.iter().take(4));
    let mut rem: u32 = 0;
    for b in rotated {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn phone_ok(s: &str) -> bool {
    // The number without its extension.
    let s = s.split(['x', 'e', '#']).next().unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    let first = digits.first().copied().unwrap_or(b'0');
    (8..=15).contains(&digits.len())
        && !digits.iter().all(|d| *d == first)
        // a date or a time is not a phone number
        && !(digits.len() == 8 && (s.contains('/') || s.matches('-').count() == 2 && !s.starts_with('+')))
}

fn private_v4(ip: std::net::Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

fn private_v6(ip: std::net::Ipv6Addr) -> bool {
    let s = ip.segments()[0];
    ip.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
}

/// A finding: byte range of the value and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub kind: String,
}

impl Scanner {
    pub fn from_json(bytes: &[u8]) -> Result<Scanner, String> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawPiiConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("field '{}': {}", e.path(), e.inner()))?;
        Scanner::new(raw)
    }

    pub fn new(raw: RawPiiConfig) -> Result<Scanner, String> {
        let mut detectors = Vec::new();
        for (kind, pattern, group, check) in builtin() {
            // ASCII word boundaries: a Unicode \b sends the regex engine off its fast DFA as
            // soon as a text has one non-ASCII character.
            let pattern = pattern.replace(r"\b", r"(?-u:\b)");
            let re = Regex::new(&pattern).map_err(|e| format!("built-in {kind} pattern: {e}"))?;
            detectors.push(Detector {
                kind: kind.into(),
                re,
                group,
                check,
            });
        }
        for (i, c) in raw.custom.iter().enumerate() {
            let re =
                Regex::new(&c.pattern).map_err(|e| format!("field 'custom[{i}].pattern': {e}"))?;
            detectors.push(Detector {
                kind: type_name(&c.kind, &format!("custom[{i}].type"))?,
                re,
                group: 0,
                check: Check::None,
            });
        }
        for (i, d) in raw.dictionaries.iter().enumerate() {
            let words: Vec<String> = d
                .values
                .iter()
                .filter(|v| !v.trim().is_empty())
                .map(|v| regex::escape(v.trim()))
                .collect();
            if words.is_empty() {
                continue;
            }
            let re = Regex::new(&format!(r"(?i)\b(?:{})\b", words.join("|")))
                .map_err(|e| format!("field 'dictionaries[{i}]': {e}"))?;
            detectors.push(Detector {
                kind: type_name(&d.kind, &format!("dictionaries[{i}].type"))?,
                re,
                group: 0,
                check: Check::None,
            });
        }
        let hashes =
            raw.default_action == Action::Hash || raw.actions.values().any(|a| *a == Action::Hash);
        if hashes && raw.hash_secret.as_deref().is_none_or(str::is_empty) {
            return Err(
                "field 'hash_secret': required when an entity type uses the hash action".into(),
            );
        }
        let set =
            RegexSet::new(detectors.iter().map(|d| d.re.as_str())).map_err(|e| e.to_string())?;
        Ok(Scanner {
            set,
            detectors,
            default_action: raw.default_action,
            actions: raw.actions,
            private_ips_only: raw.private_ips_only,
            hash_secret: raw.hash_secret.unwrap_or_default().into_bytes(),
            scan_output: raw.scan_output,
            placeholder_like: Regex::new(r"\[[A-Z][A-Z_]*_\d+\]").map_err(|e| e.to_string())?,
        })
    }

    pub fn action(&self, kind: &str) -> Action {
        self.actions
            .get(kind)
            .copied()
            .unwrap_or(self.default_action)
    }

    fn valid(&self, check: Check, s: &str) -> bool {
        match check {
            Check::None => true,
            Check::Luhn => card_ok(s),
            Check::Ssn => ssn_ok(s),
            Check::Iban => iban_ok(s),
            Check::Phone | Check::BarePhone => phone_ok(s),
            Check::Ipv4 => s
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !self.private_ips_only || private_v4(ip)),
            Check::Ipv6 => {
                let t = s.trim_matches(|c: char| !c.is_ascii_hexdigit() && c != ':');
                t.matches(':').count() >= 2
                    && t.parse::<std::net::Ipv6Addr>()
                        .is_ok_and(|ip| !self.private_ips_only || private_v6(ip))
            }
        }
    }

    /// A number-like value must stand alone: not glued to more digits or to a separator that
    /// continues a longer digit run (an order number, a timestamp, a serial).
    fn isolated(text: &str, start: usize, end: usize) -> bool {
        let before = text.get(..start).and_then(|t| t.chars().next_back());
        let mut after = text.get(end..).into_iter().flat_map(str::chars);
        let (a1, a2) = (after.next(), after.next());
        let sep = |c: char| matches!(c, '-' | '.' | '/' | '_');
        let digit_run_before = match before {
            Some(c) if c.is_ascii_digit() => true,
            Some(c) if sep(c) => text
                .get(..start.saturating_sub(1))
                .and_then(|t| t.chars().next_back())
                .is_some_and(|c| c.is_ascii_alphanumeric()),
            _ => false,
        };
        let digit_run_after = match (a1, a2) {
            (Some(c), _) if c.is_ascii_digit() => true,
            (Some(c), Some(d)) if sep(c) => d.is_ascii_digit(),
            _ => false,
        };
        !digit_run_before && !digit_run_after
    }

    /// Whether the word before `start` names an identifier (`Order #1234567890`, `invoice
    /// 2025551234`, `ID: ...`): a bare digit run there is that identifier, not a phone number.
    fn after_id_word(text: &str, start: usize) -> bool {
        const ID_WORDS: &[&str] = &[
            "order",
            "invoice",
            "ticket",
            "id",
            "ref",
            "reference",
            "account",
            "acct",
            "po",
            "sku",
            "batch",
            "build",
            "case",
            "tracking",
            "serial",
            "item",
            "no",
            "nr",
            "number",
            "customer",
            "user",
            "transaction",
            "txn",
            "isbn",
            "code",
            "job",
            "run",
        ];
        let before = text.get(..start).unwrap_or_default();
        let trimmed = before.trim_end_matches(|c: char| c.is_whitespace() || c == ':');
        if trimmed.ends_with(['#', '=']) {
            return true;
        }
        let word: String = trimmed
            .chars()
            .rev()
            .take_while(|c| c.is_alphabetic() || *c == '.')
            .collect::<Vec<char>>()
            .into_iter()
            .rev()
            .collect();
        let word = word.trim_matches('.').to_lowercase();
        ID_WORDS.contains(&word.as_str())
    }

    /// Non-overlapping findings, earliest first; on overlap the longer wins, then the detector
    /// listed first (credentials before generic patterns).
    pub fn find(&self, text: &str) -> Vec<Finding> {
        let mut all: Vec<(usize, usize, usize)> = Vec::new(); // start, end, detector
        for di in self.set.matches(text).iter() {
            let Some(d) = self.detectors.get(di) else {
                continue;
            };
            if self.action(&d.kind) == Action::Allow {
                continue;
            }
            let matches: Vec<regex::Match> = if d.group == 0 {
                d.re.find_iter(text).collect()
            } else {
                d.re.captures_iter(text)
                    .filter_map(|c| c.get(d.group))
                    .collect()
            };
            for m in matches {
                let number = matches!(
                    d.check,
                    Check::Luhn | Check::Ssn | Check::Phone | Check::BarePhone
                );
                if self.valid(d.check, m.as_str())
                    && (!number || Self::isolated(text, m.start(), m.end()))
                    && (d.check != Check::BarePhone || !Self::after_id_word(text, m.start()))
                {
                    all.push((m.start(), m.end(), di));
                }
            }
        }
        all.sort_by_key(|(s, e, d)| (*s, std::cmp::Reverse(*e), *d));
        let mut out: Vec<Finding> = Vec::new();
        let mut pos = 0;
        for (s, e, d) in all {
            if s < pos {
                continue;
            }
            if let Some(det) = self.detectors.get(d) {
                out.push(Finding {
                    start: s,
                    end: e,
                    kind: det.kind.clone(),
                });
                pos = e;
            }
        }
        out
    }
}

fn type_name(s: &str, at: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        && s.as_bytes().first() != Some(&b'_')
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "field '{at}': entity types are upper-case letters and '_', e.g. CUSTOMER"
        ))
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    let digest: [u8; 32];
    let key = if key.len() > 64 {
        digest = Sha256::digest(key).into();
        &digest[..]
    } else {
        key
    };
    for (slot, b) in k.iter_mut().zip(key) {
        *slot = *b;
    }
    let inner: [u8; 32] = Sha256::new()
        .chain_update(k.map(|b| b ^ 0x36))
        .chain_update(msg)
        .finalize()
        .into();
    Sha256::new()
        .chain_update(k.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn mask(value: &str) -> String {
    let keep = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .count()
        .saturating_sub(4);
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                seen += 1;
                if seen <= keep {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// What redacting one request did.
#[derive(Debug, Default)]
pub struct Redaction {
    /// Placeholder -> original value, for re-hydration.
    pub tokens: Vec<(String, String)>,
    /// Detections by type and action (for metrics).
    pub counts: BTreeMap<(String, &'static str), u64>,
    pub blocked: BTreeSet<String>,
    pub changed: bool,
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Tokenize => "tokenize",
        Action::Redact => "redact",
        Action::Mask => "mask",
        Action::Hash => "hash",
        Action::Block => "block",
        Action::Allow => "allow",
    }
}

/// Redacts one request: every text a provider sees (message content strings and text parts,
/// system prompts, tool-call arguments, tool results, `name` fields). Placeholders are numbered
/// per type; one value keeps one placeholder; a number the client's own text already uses as
/// `[TYPE_N]` is skipped, so a placeholder never collides with what the user wrote.
pub struct Redactor<'a> {
    scanner: &'a Scanner,
    taken: HashSet<String>,
    by_value: HashMap<(String, String), String>,
    next: HashMap<String, u32>,
    pub out: Redaction,
}

impl<'a> Redactor<'a> {
    pub fn new(scanner: &'a Scanner) -> Self {
        Redactor {
            scanner,
            taken: HashSet::new(),
            by_value: HashMap::new(),
            next: HashMap::new(),
            out: Redaction::default(),
        }
    }

    fn note_taken(&mut self, text: &str) {
        for m in self.scanner.placeholder_like.find_iter(text) {
            self.taken.insert(m.as_str().to_string());
        }
    }

    fn replacement(&mut self, kind: &str, value: &str) -> Option<String> {
        let action = self.scanner.action(kind);
        *self
            .out
            .counts
            .entry((kind.to_string(), action_name(action)))
            .or_insert(0) += 1;
        match action {
            Action::Allow => None,
            Action::Block => {
                self.out.blocked.insert(kind.to_string());
                None
            }
            Action::Redact => Some(format!("[{kind}]")),
            Action::Mask => Some(mask(value)),
            Action::Hash => {
                let h = hmac_sha256(&self.scanner.hash_secret, value.as_bytes());
                Some(format!(
                    "[{kind}:{}]",
                    h.iter()
                        .take(6)
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>()
                ))
            }
            Action::Tokenize => {
                let key = (kind.to_string(), value.to_string());
                if let Some(p) = self.by_value.get(&key) {
                    return Some(p.clone());
                }
                let n = self.next.entry(kind.to_string()).or_insert(0);
                let p = loop {
                    *n += 1;
                    let p = format!("[{kind}_{n}]");
                    if !self.taken.contains(&p) {
                        break p;
                    }
                };
                self.by_value.insert(key, p.clone());
                self.out.tokens.push((p.clone(), value.to_string()));
                Some(p)
            }
        }
    }

    pub fn redact_text(&mut self, text: &str) -> Option<String> {
        let findings = self.scanner.find(text);
        if findings.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        let mut changed = false;
        for f in findings {
            let (Some(before), Some(value)) = (text.get(pos..f.start), text.get(f.start..f.end))
            else {
                continue;
            };
            out.push_str(before);
            match self.replacement(&f.kind, value) {
                Some(r) => {
                    out.push_str(&r);
                    changed = true;
                }
                None => out.push_str(value),
            }
            pos = f.end;
        }
        out.push_str(text.get(pos..).unwrap_or_default());
        changed.then_some(out)
    }

    /// Every string the provider will see, but those under a structural key.
    fn visit(&mut self, v: &mut Value, collect: bool) {
        self.walk(v, None, collect);
    }

    fn walk(&mut self, v: &mut Value, key: Option<&str>, collect: bool) {
        match v {
            Value::String(s) => {
                if key.is_some_and(|k| STRUCTURAL.contains(&k)) {
                    return;
                }
                if collect {
                    self.note_taken(s);
                } else if let Some(r) = self.redact_text(s) {
                    *s = r;
                    self.out.changed = true;
                }
            }
            // The elements of a list share its key (`stop`, `modalities`...).
            Value::Array(items) => {
                for item in items {
                    self.walk(item, key, collect);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    self.walk(item, Some(k.as_str()), collect);
                }
            }
            _ => {}
        }
    }

    /// Redacts a parsed request in place; `Err` when a `block` type was found.
    pub fn redact_request(mut self, body: &mut Value) -> Result<Redaction, GatewayError> {
        self.visit(body, true);
        self.visit(body, false);
        if !self.out.blocked.is_empty() {
            let kinds: Vec<&str> = self.out.blocked.iter().map(String::as_str).collect();
            return Err(GatewayError::invalid_request(format!(
                "The request contains data that may not leave this organisation: {}.",
                kinds.join(", ")
            ))
            .with_code("pii_blocked"));
        }
        Ok(self.out)
    }
}

/// Keys whose string values are structure, not text, and are never scanned: names of things
/// the API defines (`model`, `role`, `type`, `object`, `tool_choice`, `reasoning_effort`...),
/// ids that must match across messages (`id`, `tool_call_id`), and media the provider decodes
/// (`url` of an image, base64 `data` / `file_data`), which a digit run could otherwise corrupt.
/// Every other string a request carries is scanned: message texts and names, tool-call
/// arguments, `user`, `metadata`, `stop`, tool descriptions and parameter schemas,
/// `response_format` schemas, predictions.
pub const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "object",
    "id",
    "tool_call_id",
    "tool_choice",
    "url",
    "detail",
    "data",
    "file_data",
    "file_id",
    "format",
    "reasoning_effort",
    "service_tier",
    "modalities",
    "voice",
    "encoding_format",
];

/// Puts tokenized values back. Placeholders are `[TYPE_N]` created for this request only: a
/// mangled or foreign one is left as it is.
#[derive(Debug, Clone, Default)]
pub struct Rehydrator {
    map: HashMap<String, String>,
    max_len: usize,
}

fn json_escaped(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    q.get(1..q.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

impl Rehydrator {
    pub fn new(tokens: &[(String, String)]) -> Self {
        let map: HashMap<String, String> = tokens.iter().cloned().collect();
        let max_len = map.keys().map(String::len).max().unwrap_or(0);
        Rehydrator { map, max_len }
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Replaces every placeholder of a complete text (`escaped`: the text is inside a JSON
    /// string, so values go in JSON-escaped).
    pub fn replace_all(&self, text: &str, escaped: bool) -> String {
        let mut s = TextStream::default();
        let mut out = s.feed(self, text, escaped);
        out.push_str(&s.finish());
        out
    }

    /// A JSON chat.completion with placeholders put back in content and tool-call arguments.
    pub fn json(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(body).ok()?;
        for c in v.get_mut("choices")?.as_array_mut()? {
            let Some(m) = c.get_mut("message") else {
                continue;
            };
            for k in ["content", "reasoning_content", "refusal"] {
                if let Some(Value::String(s)) = m.get_mut(k) {
                    *s = self.replace_all(s, false);
                }
            }
            for call in m
                .get_mut("tool_calls")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                    *s = self.replace_all(s, true);
                }
            }
        }
        serde_json::to_vec(&v).ok()
    }
}

/// Re-hydration of one text that arrives in pieces. Text with no pending `[` goes out at once;
/// from a `[` on, only what can still become one of this request's placeholders is held.
#[derive(Debug, Default)]
pub struct TextStream {
    pending: String,
}

impl TextStream {
    pub fn feed(&mut self, r: &Rehydrator, text: &str, escaped: bool) -> String {
        let mut s = std::mem::take(&mut self.pending);
        s.push_str(text);
        let mut out = String::with_capacity(s.len());
        let mut rest = s.as_str();
        while let Some(i) = rest.find('[') {
            out.push_str(rest.get(..i).unwrap_or_default());
            let tail = rest.get(i..).unwrap_or_default();
            if let Some(end) = tail.find(']').filter(|e| *e < r.max_len) {
                let candidate = tail.get(..=end).unwrap_or_default();
                if let Some(v) = r.map.get(candidate) {
                    out.push_str(&if escaped { json_escaped(v) } else { v.clone() });
                    rest = tail.get(end + 1..).unwrap_or_default();
                    continue;
                }
            } else if tail.len() < r.max_len && r.map.keys().any(|k| k.starts_with(tail)) {
                self.pending = tail.to_string();
                return out;
            }
            out.push('[');
            rest = tail.get(1..).unwrap_or_default();
        }
        out.push_str(rest);
        out
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Re-hydration of an OpenAI SSE stream: per choice, content and reasoning text and each tool
/// call's arguments are separate texts. Held text is flushed into the chunk that finishes its
/// choice (or before `[DONE]`).
#[derive(Debug, Default)]
pub struct SseRehydrator {
    r: Rehydrator,
    parser: SseParser,
    texts: BTreeMap<(u64, String), TextStream>,
}

impl crate::stream::StreamTranslator for SseRehydrator {
    fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        SseRehydrator::feed(self, chunk)
    }
    fn finish(&mut self) -> Vec<u8> {
        SseRehydrator::finish(self)
    }
}

impl SseRehydrator {
    pub fn new(r: Rehydrator) -> Self {
        SseRehydrator {
            r,
            ..Default::default()
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        match self.parser.feed(chunk) {
            Ok(evs) => self.events(evs),
            Err(_) => chunk.to_vec(),
        }
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let evs = self.parser.finish().unwrap_or_default();
        let mut out = self.events(evs);
        out.extend(self.flush_all(None));
        out
    }

    fn flush_all(&mut self, index: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        let keys: Vec<(u64, String)> = self
            .texts
            .keys()
            .filter(|(i, _)| index.is_none_or(|x| x == *i))
            .cloned()
            .collect();
        for (i, field) in keys {
            let held = self
                .texts
                .get_mut(&(i, field.clone()))
                .map(TextStream::finish)
                .unwrap_or_default();
            if held.is_empty() {
                continue;
            }
            let delta = if let Some(k) = field.strip_prefix("tool:") {
                serde_json::json!({"tool_calls": [{"index": k.parse::<u64>().unwrap_or(0), "function": {"arguments": held}}]})
            } else {
                serde_json::json!({ field: held })
            };
            let chunk = serde_json::json!({"object": "chat.completion.chunk", "choices": [{"index": i, "delta": delta, "finish_reason": null}]});
            sse::write_data(&mut out, &serde_json::to_vec(&chunk).unwrap_or_default());
        }
        out
    }

    fn events(&mut self, events: Vec<sse::SseEvent>) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in events {
            if ev.data == "[DONE]" {
                out.extend(self.flush_all(None));
                sse::write_data(&mut out, b"[DONE]");
                continue;
            }
            let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
                sse::write_data(&mut out, ev.data.as_bytes());
                continue;
            };
            let mut finished = Vec::new();
            if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                for c in choices {
                    let i = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let finishing = c.get("finish_reason").is_some_and(|f| !f.is_null());
                    let Some(d) = c.get_mut("delta").and_then(Value::as_object_mut) else {
                        continue;
                    };
                    for field in ["content", "reasoning_content"] {
                        let held_before = self
                            .texts
                            .get(&(i, field.to_string()))
                            .is_some_and(|t| !t.pending.is_empty());
                        if let Some(Value::String(s)) = d.get_mut(field) {
                            let ts = self.texts.entry((i, field.to_string())).or_default();
                            *s = ts.feed(&self.r, s, false);
                        } else if finishing && held_before {
                            let held = self
                                .texts
                                .get_mut(&(i, field.to_string()))
                                .map(TextStream::finish)
                                .unwrap_or_default();
                            d.insert(field.into(), Value::String(held));
                        }
                    }
                    for call in d
                        .get_mut("tool_calls")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(Value::String(s)) = call.pointer_mut("/function/arguments") {
                            let ts = self.texts.entry((i, format!("tool:{k}"))).or_default();
                            *s = ts.feed(&self.r, s, true);
                        }
                    }
                    if finishing {
                        finished.push(i);
                    }
                }
            }
            // What a finishing choice still holds goes out before its finish chunk.
            for i in finished {
                out.extend(self.flush_all(Some(i)));
            }
            sse::write_data(&mut out, &serde_json::to_vec(&v).unwrap_or_default());
        }
        out
    }
}

/// Output scanning: PII the model wrote on its own, redacted (`[TYPE]`) in a complete answer.
pub fn scan_output_json(scanner: &Scanner, body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for c in v.get_mut("choices")?.as_array_mut()? {
        if let Some(Value::String(s)) = c.pointer_mut("/message/content") {
            let findings = scanner.find(s);
            if findings.is_empty() {
                continue;
            }
            let mut out = String::new();
            let mut pos = 0;
            for f in findings {
                out.push_str(s.get(pos..f.start).unwrap_or_default());
                out.push_str(&format!("[{}]", f.kind));
                pos = f.end;
            }
            out.push_str(s.get(pos..).unwrap_or_default());
            *s = out;
            changed = true;
        }
    }
    if changed {
        serde_json::to_vec(&v).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scanner(extra: Value) -> Scanner {
        Scanner::from_json(extra.to_string().as_bytes()).unwrap()
    }

    fn kinds(s: &Scanner, text: &str) -> Vec<(String, String)> {
        s.find(text)
            .into_iter()
            .map(|f| (f.kind, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn detectors_with_validation() {
        let s = scanner(json!({}));
        let k = |t: &str| kinds(&s, t);
        assert_eq!(
            k("mail jane.doe@example.co.uk now"),
            [("EMAIL".into(), "jane.doe@example.co.uk".into())]
        );
        assert_eq!(k("card 4111 1111 1111 1111 ok")[0].0, "CREDIT_CARD");
        assert_eq!(k("card 4111-1111-1111-1111")[0].0, "CREDIT_CARD");
        assert_eq!(k("amex 3782 822463 10005")[0].0, "CREDIT_CARD");
        assert_eq!(k("mc2 2223003122003222")[0].0, "CREDIT_CARD");
        assert!(k("order 4111 1111 1111 1112").is_empty(), "Luhn");
        assert!(k("id 41111 1111 1111 111").is_empty(), "grouping");
        assert_eq!(k("ssn 123-45-6789")[0].0, "US_SSN");
        let bad = k("ssn 666-45-6789 000-12-1234 123-00-1234 123-45-0000 912-45-6789");
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(k("iban DE89 3704 0044 0532 0130 00.")[0].0, "IBAN");
        assert_eq!(k("GB82WEST12345698765432")[0].0, "IBAN");
        assert!(
            k("DE89 3704 0044 0532 0130 01")
                .iter()
                .all(|(t, _)| t != "IBAN"),
            "mod-97"
        );
        assert_eq!(
            k("host 10.1.2.3 up"),
            [("IP_ADDRESS".into(), "10.1.2.3".into())]
        );
        assert!(k("version 1.2.3.400").is_empty());
        assert_eq!(k("v6 fe80::1ff:fe23:4567:890a here")[0].0, "IP_ADDRESS");
        assert_eq!(k("mac 00:1A:2B:3C:4D:5E")[0].0, "MAC_ADDRESS");
        assert_eq!(k("call +1 415 555 2671 or")[0].0, "PHONE_NUMBER");
        assert_eq!(k("call (415) 555-2671")[0].0, "PHONE_NUMBER");
        // Faker's formats, no context word needed.
        for p in [
            "206.269.0743x9150",
            "+1-537-640-6812x41586",
            "001-771-901-9011x53000",
            "(591)341-7776",
            "+44(0)115 4960914",
            "(0161) 496 0972",
            "(0116)4960183",
            "0292018871",
            "(09281) 44669",
            "+49 (0) 9141 777631",
            "00669 074391",
            "02 49 01 90 11",
            "+33 (0)1 41 63 60 83",
            "8627659411",
        ] {
            let t = format!("reach me on {p} today");
            let f = k(&t);
            assert!(
                f.first()
                    .is_some_and(|(kind, v)| kind == "PHONE_NUMBER" && p.starts_with(v.as_str())),
                "{p}: {f:?}"
            );
        }
        // Identifiers are not phone numbers.
        for t in [
            "Order #8627659411 shipped",
            "Invoice no. 8627659411",
            "Customer ID: 8627659411",
            "at 2024-05-06 12:30:45",
            "on 05.06.2024",
        ] {
            assert!(k(t).iter().all(|(kind, _)| kind != "PHONE_NUMBER"), "{t}");
        }
        assert!(k("at 2024-05-12 10:22:31 order 12345678").is_empty());
        assert_eq!(k("key AKIAIOSFODNN7EXAMPLE")[0].0, "AWS_ACCESS_KEY");
        assert_eq!(
            k("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")[0].0,
            "AWS_SECRET_KEY"
        );
        assert_eq!(
            k("ghp_abcdefghijklmnopqrstuvwxyz0123456789")[0].0,
            "GITHUB_TOKEN"
        );
        assert_eq!(k("sk-ant-api03-abcdefghijklmnopqrstuvwxyz")[0].0, "API_KEY");
        assert_eq!(k("xoxb-1234567890-abcdefghij")[0].0, "SLACK_TOKEN");
        assert_eq!(k("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")[0].0, "JWT");
        assert_eq!(
            k("postgres://admin:hunter2@db.internal:5432/x")[0].0,
            "URL_CREDENTIALS"
        );
        assert_eq!(
            k("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----")[0].0,
            "PRIVATE_KEY"
        );
        assert_eq!(
            k("She was born on 12/03/1985 in Rome"),
            [("DATE_OF_BIRTH".into(), "12/03/1985".into())]
        );
        assert!(
            k("The release shipped on 12/03/1985.").is_empty(),
            "a date without context"
        );
        assert_eq!(
            k("Please ask Dr. Maria Rossi"),
            [("PERSON".into(), "Maria Rossi".into())]
        );
        assert_eq!(
            k("Hi, my name is John Smith and"),
            [("PERSON".into(), "John Smith".into())]
        );
        assert!(k("uuid 123e4567-e89b-12d3-a456-426614174000 price $1,299.99").is_empty());
    }

    #[test]
    fn private_ips_only_and_custom_types() {
        let s = scanner(
            json!({"private_ips_only": true, "custom": [{"type": "TICKET", "pattern": "TCK-\\d{6}"}],
            "dictionaries": [{"type": "CUSTOMER", "values": ["Acme Corp", "Globex"]}]}),
        );
        assert!(kinds(&s, "dns 8.8.8.8").is_empty());
        assert_eq!(kinds(&s, "db 192.168.0.7")[0].0, "IP_ADDRESS");
        assert_eq!(kinds(&s, "see TCK-123456")[0].0, "TICKET");
        assert_eq!(kinds(&s, "deal with acme corp and GLOBEX").len(), 2);
        assert!(Scanner::from_json(br#"{"custom":[{"type":"x","pattern":"a"}]}"#).is_err());
        assert!(
            Scanner::from_json(br#"{"custom":[{"type":"X","pattern":"("}]}"#)
                .unwrap_err()
                .contains("custom[0]")
        );
        assert!(Scanner::from_json(br#"{"default_action":"hash"}"#)
            .unwrap_err()
            .contains("hash_secret"));
    }

    #[test]
    fn every_string_the_provider_sees_is_scanned_but_structure() {
        let s = scanner(json!({}));
        let png = "data:image/png;base64,QUJDRA4111111111111111==";
        let mut body = json!({
            "model": "m", "user": "jane@corp.com",
            "metadata": {"owner": "jane@corp.com"},
            "stop": ["jane@corp.com", "END"],
            "messages": [
                {"role": "user", "name": "jane@corp.com", "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": png, "detail": "low"}}]},
                {"role": "assistant", "tool_calls": [{"id": "call_jane@corp.com", "type": "function",
                    "function": {"name": "send", "arguments": "{\"to\":\"jane@corp.com\"}"}}]},
                {"role": "tool", "tool_call_id": "call_jane@corp.com", "content": "ok"}],
            "tools": [{"type": "function", "function": {"name": "send",
                "description": "Mails jane@corp.com",
                "parameters": {"type": "object", "properties": {"to": {"type": "string",
                    "description": "e.g. jane@corp.com", "enum": ["jane@corp.com"]}}}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r",
                "schema": {"type": "object", "description": "for jane@corp.com"}}}
        });
        Redactor::new(&s).redact_request(&mut body).unwrap();
        let mut left = body.clone();
        // What must stay: ids (they pair calls with results) and media.
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["id"],
            "call_jane@corp.com"
        );
        assert_eq!(body["messages"][2]["tool_call_id"], "call_jane@corp.com");
        assert_eq!(body["messages"][0]["content"][1]["image_url"]["url"], png);
        left["messages"][1]["tool_calls"][0]["id"] = json!("x");
        left["messages"][2]["tool_call_id"] = json!("x");
        assert!(!left.to_string().contains("jane@corp.com"), "{left}");
        assert_eq!(body["user"], "[EMAIL_1]");
        assert_eq!(body["stop"][1], "END");
    }

    #[test]
    fn actions_and_placeholders() {
        let s = scanner(
            json!({"actions": {"US_SSN": "redact", "CREDIT_CARD": "mask", "IP_ADDRESS": "hash"}, "hash_secret": "k"}),
        );
        let mut body = json!({"messages": [
            {"role": "system", "content": "Contact ops@corp.com"},
            {"role": "user", "content": [{"type": "text", "text": "I typed [EMAIL_1] myself; mail ops@corp.com and bob@corp.com, ssn 123-45-6789, card 4111111111111111, ip 10.0.0.1"}]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "send", "arguments": "{\"to\":\"bob@corp.com\"}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "sent to bob@corp.com"}
        ]});
        let red = Redactor::new(&s).redact_request(&mut body).unwrap();
        let text = body.to_string();
        assert!(
            !text.contains("ops@corp.com")
                && !text.contains("bob@corp.com")
                && !text.contains("123-45-6789")
        );
        assert_eq!(
            body["messages"][0]["content"], "Contact [EMAIL_2]",
            "[EMAIL_1] is the user's own text"
        );
        let t = body["messages"][1]["content"][0]["text"].as_str().unwrap();
        assert!(t.starts_with("I typed [EMAIL_1] myself; mail [EMAIL_2] and [EMAIL_3], ssn [US_SSN], card ************1111, ip [IP_ADDRESS:"));
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"to\":\"[EMAIL_3]\"}"
        );
        assert_eq!(body["messages"][3]["content"], "sent to [EMAIL_3]");
        assert_eq!(
            red.tokens,
            vec![
                ("[EMAIL_2]".into(), "ops@corp.com".into()),
                ("[EMAIL_3]".into(), "bob@corp.com".into())
            ]
        );
        // hashing is stable across requests
        let mut again = json!({"messages": [{"role": "user", "content": "ip 10.0.0.1"}]});
        Redactor::new(&s).redact_request(&mut again).unwrap();
        assert!(t.contains(
            again["messages"][0]["content"]
                .as_str()
                .unwrap()
                .trim_start_matches("ip ")
        ));
        let b = scanner(json!({"actions": {"US_SSN": "block"}}));
        let e = Redactor::new(&b)
            .redact_request(
                &mut json!({"messages": [{"role": "user", "content": "ssn 123-45-6789"}]}),
            )
            .unwrap_err();
        assert!(e.message.contains("US_SSN") && !e.message.contains("6789"));
    }

    #[test]
    fn rehydrates_json_with_escaping() {
        let r = Rehydrator::new(&[
            ("[EMAIL_1]".into(), "a\"b@x.io".into()),
            ("[PERSON_1]".into(), "Zoë".into()),
        ]);
        let body = json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "[PERSON_1] <[EMAIL_1]> [EMAIL_9] [EMAIL_1",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"to\":\"[EMAIL_1]\"}"}}]}}]});
        let out: Value =
            serde_json::from_slice(&r.json(body.to_string().as_bytes()).unwrap()).unwrap();
        assert_eq!(
            out["choices"][0]["message"]["content"],
            "Zoë <a\"b@x.io> [EMAIL_9] [EMAIL_1"
        );
        let args: Value = serde_json::from_str(
            out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args["to"], "a\"b@x.io");
    }

    #[test]
    fn text_stream_split_at_every_byte() {
        let r = Rehydrator::new(&[
            ("[EMAIL_1]".into(), "me@x.io".into()),
            ("[CREDIT_CARD_12]".into(), "4111".into()),
        ]);
        let text =
            "Mail [EMAIL_1] or [EMAIL_2] [x] [CREDIT_CARD_12][EMAIL_1]! [[EMAIL_1]] end [EMAIL_";
        let want = "Mail me@x.io or [EMAIL_2] [x] 4111me@x.io! [me@x.io] end [EMAIL_";
        let b = text.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                let mut s = TextStream::default();
                let parts = [&text[..i.min(text.len())], &text[i..j], &text[j..]];
                if !text.is_char_boundary(i) || !text.is_char_boundary(j) {
                    continue;
                }
                let mut out = String::new();
                for p in parts {
                    out.push_str(&s.feed(&r, p, false));
                }
                out.push_str(&s.finish());
                assert_eq!(out, want, "{i} {j}");
            }
        }
        // Text with no '[' is never held.
        let mut s = TextStream::default();
        assert_eq!(s.feed(&r, "plain ", false), "plain ");
        assert_eq!(s.feed(&r, "text [EM", false), "text ");
    }

    #[test]
    fn sse_rehydration_across_chunks_and_choices() {
        let r = Rehydrator::new(&[("[EMAIL_1]".into(), "me@x.io".into())]);
        let ev = |c: Value| {
            format!(
                "data: {}\n\n",
                json!({"object": "chat.completion.chunk", "choices": c})
            )
        };
        let stream = [
            ev(json!([{"index": 0, "delta": {"role": "assistant", "content": "to [EMA"}}, {"index": 1, "delta": {"content": "[EMAIL"}}])),
            ev(json!([{"index": 0, "delta": {"content": "IL_1] ok"}}])),
            ev(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":\"[EMAIL_"}}]}}])),
            ev(json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1]\"}"}}]}}])),
            ev(json!([{"index": 1, "delta": {}, "finish_reason": "stop"}])),
            ev(json!([{"index": 0, "delta": {}, "finish_reason": "stop"}])),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        for cut in 0..stream.len() {
            let mut s = SseRehydrator::new(r.clone());
            let mut out = s.feed(&stream.as_bytes()[..cut]);
            out.extend(s.feed(&stream.as_bytes()[cut..]));
            out.extend(s.finish());
            let mut p = SseParser::default();
            let evs = p.feed(&out).unwrap();
            let mut text = [String::new(), String::new()];
            let mut args = String::new();
            for e in &evs {
                if e.data == "[DONE]" {
                    continue;
                }
                let v: Value = serde_json::from_str(&e.data).unwrap();
                for c in v["choices"].as_array().unwrap() {
                    let i = c["index"].as_u64().unwrap() as usize;
                    text[i].push_str(c["delta"]["content"].as_str().unwrap_or(""));
                    for tc in c["delta"]["tool_calls"].as_array().into_iter().flatten() {
                        args.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
                    }
                }
            }
            assert_eq!(text[0], "to me@x.io ok", "cut {cut}");
            assert_eq!(
                text[1], "[EMAIL",
                "a held prefix that never completes comes out as it was"
            );
            assert_eq!(args, "{\"a\":\"me@x.io\"}");
            assert_eq!(evs.last().unwrap().data, "[DONE]");
        }
    }

    #[test]
    fn near_miss_digits_do_not_panic_or_match() {
        let s = scanner(json!({}));
        let text = "1234567890123456789 ".repeat(2000) + &"9".repeat(5000) + "\u{fffd}é[EMAIL_";
        let _ = s.find(&text);
        let f = kinds(&s, "0000-0000-0000-0000 1111 1111 1111 1111");
        assert!(f.is_empty(), "{f:?}");
    }
}

//! Validators that narrow the detectors' patterns: card numbers (issuer prefixes, Luhn,
//! separators), US SSNs, IBANs (country lengths, mod 97), phone numbers, private IPs.

pub(super) fn luhn(digits: &[u8]) -> bool {
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
pub(super) fn card_ok(s: &str) -> bool {
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

pub(super) fn ssn_ok(s: &str) -> bool {
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
pub(super) const IBAN_LENGTHS: &[(&str, usize)] = &[
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

pub(super) fn iban_ok(s: &str) -> bool {
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

pub(super) fn phone_ok(s: &str) -> bool {
    // The number without its extension.
    let s = s.split(['x', 'e', '#']).next().unwrap_or(s);
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    let first = digits.first().copied().unwrap_or(b'0');
    (8..=15).contains(&digits.len())
        && !digits.iter().all(|d| *d == first)
        // a date or a time is not a phone number
        && !(digits.len() == 8 && (s.contains('/') || s.matches('-').count() == 2 && !s.starts_with('+')))
}

pub(super) fn private_v4(ip: std::net::Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (o[0] == 100 && (64..128).contains(&o[1]))
}

pub(super) fn private_v6(ip: std::net::Ipv6Addr) -> bool {
    let s = ip.segments()[0];
    ip.is_loopback() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
}

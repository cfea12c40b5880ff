//! National identity numbers customers type when a service asks who they
//! are: Brazil's CPF (`123.456.789-09`), Spain's DNI and NIE (`12345678Z`,
//! `X1234567L`), India's Aadhaar (`2345 6789 0124`) and PAN (`ABCPE1234F`),
//! Chile's RUT (`12.345.678-5`), Portugal's NIF (`123 456 789`), Italy's
//! codice fiscale (`RSSMRA85T10A562S`), Germany's tax id (Steuer-IdNr,
//! `86 095 742 719`), the UK's National Insurance number (`AB 12 34 56 C`),
//! Mexico's CURP (`HEGG560427MVZRRL04`).
//!
//! Each is found only where its check digit (or, for a PAN and a National
//! Insurance number, its fixed pattern) holds, and only for the countries a
//! rule names (`countries`): a run of digits of the same length is
//! otherwise an id or a reference. Countries whose numbers carry no check
//! (Colombia's cédula, Peru's DNI) have none.

use super::national::{Region, Regions};

/// Whether `region` has an identity number this module finds.
pub fn known(region: Region) -> bool {
    matches!(
        region,
        Region::Brazil
            | Region::Chile
            | Region::Germany
            | Region::Spain
            | Region::UnitedKingdom
            | Region::India
            | Region::Italy
            | Region::Mexico
            | Region::Portugal
    )
}

/// The first identity number of one of `regions` at or after byte `from`.
pub(super) fn find_national_id(
    text: &str,
    from: usize,
    regions: Regions,
) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let on = |r: Region| regions.contains(r);
    let mut i = from;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphanumeric() && super::finance::starts_word(bytes, i) {
            let b = bytes[i];
            let end = if b.is_ascii_digit() {
                (on(Region::Brazil).then(|| cpf_at(bytes, i)).flatten())
                    .or_else(|| on(Region::Spain).then(|| dni_at(bytes, i)).flatten())
                    .or_else(|| on(Region::Chile).then(|| rut_at(bytes, i)).flatten())
                    .or_else(|| on(Region::India).then(|| aadhaar_at(bytes, i)).flatten())
                    .or_else(|| on(Region::Portugal).then(|| nif_at(bytes, i)).flatten())
                    .or_else(|| {
                        on(Region::Germany)
                            .then(|| steuer_id_at(bytes, i))
                            .flatten()
                    })
            } else {
                (on(Region::Spain).then(|| nie_at(bytes, i)).flatten())
                    .or_else(|| on(Region::India).then(|| pan_at(bytes, i)).flatten())
                    .or_else(|| {
                        on(Region::Italy)
                            .then(|| codice_fiscale_at(bytes, i))
                            .flatten()
                    })
                    .or_else(|| {
                        on(Region::UnitedKingdom)
                            .then(|| nino_at(bytes, i))
                            .flatten()
                    })
                    .or_else(|| on(Region::Mexico).then(|| curp_at(bytes, i)).flatten())
            };
            if let Some(end) = end {
                return Some((i, end));
            }
        }
        i += 1;
    }
    None
}

/// Whether the token ends at `end`: no letter or digit, and no further
/// group of digits, follows.
fn ends_token(bytes: &[u8], end: usize) -> bool {
    match bytes.get(end) {
        None => true,
        Some(b) if b.is_ascii_alphanumeric() => false,
        Some(b' ' | b'-' | b'.' | b'/') => !bytes.get(end + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

/// The digits read by [`read_shape`] (no number here has more than 12).
struct Digits {
    d: [u8; 12],
    n: usize,
}

impl std::ops::Deref for Digits {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.d[..self.n]
    }
}

/// Reads digits at `at` following `shape`: a digit count per group and the
/// separator required after each group but the last (`None`: none).
/// Returns the digits and where the read stopped, or `None` when the text
/// does not fit.
fn read_shape(bytes: &[u8], at: usize, shape: &[(usize, Option<u8>)]) -> Option<(Digits, usize)> {
    let mut digits = Digits { d: [0; 12], n: 0 };
    let mut i = at;
    for (k, &(n, sep)) in shape.iter().enumerate() {
        for _ in 0..n {
            let b = *bytes.get(i).filter(|b| b.is_ascii_digit())?;
            *digits.d.get_mut(digits.n)? = b - b'0';
            digits.n += 1;
            i += 1;
        }
        if k + 1 < shape.len() {
            if let Some(s) = sep {
                if bytes.get(i) != Some(&s) {
                    return None;
                }
                i += 1;
            }
        }
    }
    Some((digits, i))
}

/// The first shape of `shapes` the text at `at` fits as a whole token.
fn read_any(bytes: &[u8], at: usize, shapes: &[&[(usize, Option<u8>)]]) -> Option<(Digits, usize)> {
    shapes
        .iter()
        .filter_map(|shape| read_shape(bytes, at, shape))
        .find(|(_, end)| ends_token(bytes, *end))
}

/// Brazil's CPF: `123.456.789-09` or 11 bare digits, two mod 11 check
/// digits, not all one digit.
fn cpf_at(bytes: &[u8], at: usize) -> Option<usize> {
    let (d, end) = read_any(
        bytes,
        at,
        &[
            &[(3, Some(b'.')), (3, Some(b'.')), (3, Some(b'-')), (2, None)],
            &[(11, None)],
        ],
    )?;
    let check = |n: usize| {
        let sum: usize = d[..n]
            .iter()
            .enumerate()
            .map(|(k, &x)| usize::from(x) * (n + 1 - k))
            .sum();
        (sum * 10 % 11 % 10) as u8
    };
    let varied = d.iter().any(|&x| x != d[0]);
    (varied && check(9) == d[9] && check(10) == d[10]).then_some(end)
}

/// Spain's DNI: 8 digits and the letter their remainder by 23 picks
/// (`12345678Z`, `12345678-Z`).
fn dni_at(bytes: &[u8], at: usize) -> Option<usize> {
    let (d, mut i) = read_shape(bytes, at, &[(8, None)])?;
    if matches!(bytes.get(i), Some(b'-' | b' ')) {
        i += 1;
    }
    let letter = bytes.get(i)?.to_ascii_uppercase();
    let n = d.iter().fold(0u32, |n, &x| n * 10 + u32::from(x));
    (dni_letter(n) == letter && ends_token(bytes, i + 1)).then_some(i + 1)
}

/// Spain's NIE: `X`, `Y` or `Z` (0, 1, 2), 7 digits and the DNI letter of
/// the whole (`X1234567L`).
fn nie_at(bytes: &[u8], at: usize) -> Option<usize> {
    let lead = match bytes[at].to_ascii_uppercase() {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        _ => return None,
    };
    let mut i = at + 1;
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    let (d, mut i) = read_shape(bytes, i, &[(7, None)])?;
    if matches!(bytes.get(i), Some(b'-' | b' ')) {
        i += 1;
    }
    let letter = bytes.get(i)?.to_ascii_uppercase();
    let n = d.iter().fold(lead, |n, &x| n * 10 + u32::from(x));
    (dni_letter(n) == letter && ends_token(bytes, i + 1)).then_some(i + 1)
}

fn dni_letter(n: u32) -> u8 {
    b"TRWAGMYFPDXBNJZSQVHLCKE"[(n % 23) as usize]
}

/// Chile's RUT (RUN): 7 or 8 digits, dotted in threes or not, a hyphen and
/// the mod 11 check (`0`–`9` or `K`): `12.345.678-5`, `12345678-5`.
fn rut_at(bytes: &[u8], at: usize) -> Option<usize> {
    const SHAPES: [&[(usize, Option<u8>)]; 4] = [
        &[(2, Some(b'.')), (3, Some(b'.')), (3, Some(b'-')), (0, None)],
        &[(1, Some(b'.')), (3, Some(b'.')), (3, Some(b'-')), (0, None)],
        &[(8, Some(b'-')), (0, None)],
        &[(7, Some(b'-')), (0, None)],
    ];
    // The check character follows the hyphen, so the token ends after it.
    let (d, i) = SHAPES
        .iter()
        .find_map(|shape| read_shape(bytes, at, shape))?;
    let given = bytes.get(i)?.to_ascii_uppercase();
    let sum: u32 = d
        .iter()
        .rev()
        .zip([2u32, 3, 4, 5, 6, 7].iter().cycle())
        .map(|(&x, &w)| u32::from(x) * w)
        .sum();
    let want = match 11 - sum % 11 {
        11 => b'0',
        10 => b'K',
        n => b'0' + n as u8,
    };
    (given == want && ends_token(bytes, i + 1)).then_some(i + 1)
}

/// India's Aadhaar: 12 digits from 2 to 9, bare or in fours (space or
/// hyphen), passing the Verhoeff check.
fn aadhaar_at(bytes: &[u8], at: usize) -> Option<usize> {
    if !matches!(bytes[at], b'2'..=b'9') {
        return None;
    }
    let (d, end) = read_any(
        bytes,
        at,
        &[
            &[(4, Some(b' ')), (4, Some(b' ')), (4, None)],
            &[(4, Some(b'-')), (4, Some(b'-')), (4, None)],
            &[(12, None)],
        ],
    )?;
    verhoeff(&d).then_some(end)
}

/// The Verhoeff check over `digits`, its check digit last.
fn verhoeff(digits: &[u8]) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let c = digits.iter().rev().enumerate().fold(0u8, |c, (k, &x)| {
        D[usize::from(c)][usize::from(P[k % 8][usize::from(x)])]
    });
    c == 0
}

/// India's PAN: five letters (the fourth the holder's kind), four digits,
/// a letter (`ABCPE1234F`). It carries no check digit: the pattern is all.
fn pan_at(bytes: &[u8], at: usize) -> Option<usize> {
    let t = bytes.get(at..at + 10)?;
    let upper = |b: &u8| b.is_ascii_uppercase();
    let ok = t[..5].iter().all(upper)
        && b"ABCFGHJLPT".contains(&t[3])
        && t[5..9].iter().all(u8::is_ascii_digit)
        && upper(&t[9]);
    (ok && ends_token(bytes, at + 10)).then_some(at + 10)
}

/// Portugal's NIF: 9 digits (from 1, 2, 3, 5, 6, 8 or 9), bare or in
/// threes, the last a mod 11 check.
fn nif_at(bytes: &[u8], at: usize) -> Option<usize> {
    if !matches!(bytes[at], b'1' | b'2' | b'3' | b'5' | b'6' | b'8' | b'9') {
        return None;
    }
    let (d, end) = read_any(
        bytes,
        at,
        &[&[(3, Some(b' ')), (3, Some(b' ')), (3, None)], &[(9, None)]],
    )?;
    let sum: usize = d[..8]
        .iter()
        .enumerate()
        .map(|(k, &x)| usize::from(x) * (9 - k))
        .sum();
    let check = match 11 - sum % 11 {
        10 | 11 => 0,
        n => n as u8,
    };
    (check == d[8]).then_some(end)
}

/// Italy's codice fiscale: six letters (surname, name), the year, the
/// month's letter, the day, the birthplace's code and a check letter
/// (`RSSMRA85T10A562S`), in either case. Digits may be replaced by the
/// letters `L`–`V` (omocodia); the check letter is computed over the
/// characters as written.
fn codice_fiscale_at(bytes: &[u8], at: usize) -> Option<usize> {
    let mut t = [0u8; 16];
    t.copy_from_slice(bytes.get(at..at + 16)?);
    t.make_ascii_uppercase();
    let letter = |b: u8| b.is_ascii_uppercase();
    let digit = |b: u8| b.is_ascii_digit() || b"LMNPQRSTUV".contains(&b);
    let shaped = t[..6].iter().all(|&b| letter(b))
        && t[6..8].iter().all(|&b| digit(b))
        && b"ABCDEHLMPRST".contains(&t[8])
        && t[9..11].iter().all(|&b| digit(b))
        && letter(t[11])
        && t[12..15].iter().all(|&b| digit(b))
        && letter(t[15]);
    if !shaped || !ends_token(bytes, at + 16) {
        return None;
    }
    // Odd positions (1st, 3rd, …) count by this table, digits as the
    // letter of the same index; even ones by their index.
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let index = |b: u8| {
        u32::from(if b.is_ascii_digit() {
            b - b'0'
        } else {
            b - b'A'
        })
    };
    let sum: u32 = t[..15]
        .iter()
        .enumerate()
        .map(|(k, &b)| {
            if k % 2 == 0 {
                ODD[index(b) as usize]
            } else {
                index(b)
            }
        })
        .sum();
    (t[15] == b'A' + (sum % 26) as u8).then_some(at + 16)
}

/// Germany's tax id (Steuerliche Identifikationsnummer): 11 digits, bare
/// or `2 3 3 3`, not from 0, with one digit of the first ten there two or
/// three times and the rest at most once, and an ISO 7064 MOD 11,10 check
/// digit.
fn steuer_id_at(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes[at] == b'0' {
        return None;
    }
    let (d, end) = read_any(
        bytes,
        at,
        &[
            &[(2, Some(b' ')), (3, Some(b' ')), (3, Some(b' ')), (3, None)],
            &[(11, None)],
        ],
    )?;
    let mut counts = [0u8; 10];
    for &x in &d[..10] {
        counts[usize::from(x)] += 1;
    }
    let repeated = counts.iter().filter(|&&c| c > 1).count();
    let spread = repeated == 1 && counts.iter().all(|&c| c <= 3);
    let mut product = 10u32;
    for &x in &d[..10] {
        let sum = match (u32::from(x) + product) % 10 {
            0 => 10,
            n => n,
        };
        product = sum * 2 % 11;
    }
    let check = match 11 - product {
        10 => 0,
        n => n as u8,
    };
    (spread && check == d[10]).then_some(end)
}

/// The UK's National Insurance number: two letters (never D, F, I, Q, U,
/// V; the second not O; not BG, GB, KN, NK, NT, TN or ZZ), six digits and
/// a letter from A to D, bare or `AB 12 34 56 C`, in either case. It
/// carries no check digit: the pattern is all.
fn nino_at(bytes: &[u8], at: usize) -> Option<usize> {
    let upper = |i: usize| bytes.get(i).map(u8::to_ascii_uppercase);
    let (a, b) = (upper(at)?, upper(at + 1)?);
    let letters = a.is_ascii_uppercase()
        && b.is_ascii_uppercase()
        && !b"DFIQUV".contains(&a)
        && !b"DFIOQUV".contains(&b)
        && ![*b"BG", *b"GB", *b"KN", *b"NK", *b"NT", *b"TN", *b"ZZ"].contains(&[a, b]);
    if !letters {
        return None;
    }
    let spaced = bytes.get(at + 2) == Some(&b' ');
    let mut i = at + 2;
    for _ in 0..3 {
        if spaced {
            if bytes.get(i) != Some(&b' ') {
                return None;
            }
            i += 1;
        }
        for _ in 0..2 {
            if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            i += 1;
        }
    }
    if spaced {
        if bytes.get(i) != Some(&b' ') {
            return None;
        }
        i += 1;
    }
    upper(i).filter(|s| (b'A'..=b'D').contains(s))?;
    ends_token(bytes, i + 1).then_some(i + 1)
}

/// Mexico's CURP: four letters, the birth date (`YYMMDD`), the sex (`H`,
/// `M` or `X`), the state's two letters, three consonants, a character
/// that tells the century and a check digit over the other seventeen
/// (`HEGG560427MVZRRL04`), in either case.
fn curp_at(bytes: &[u8], at: usize) -> Option<usize> {
    const STATES: [&[u8; 2]; 33] = [
        b"AS", b"BC", b"BS", b"CC", b"CL", b"CM", b"CS", b"CH", b"DF", b"DG", b"GT", b"GR", b"HG",
        b"JC", b"MC", b"MN", b"MS", b"NT", b"NL", b"OC", b"PL", b"QT", b"QR", b"SP", b"SL", b"SR",
        b"TC", b"TS", b"TL", b"VZ", b"YN", b"ZS", b"NE",
    ];
    let mut t = [0u8; 18];
    t.copy_from_slice(bytes.get(at..at + 18)?);
    t.make_ascii_uppercase();
    let letter = |b: u8| b.is_ascii_uppercase();
    let consonant = |b: u8| letter(b) && !b"AEIOU".contains(&b);
    let two = |i: usize| (t[i] - b'0') * 10 + (t[i + 1] - b'0');
    let shaped = t[..4].iter().all(|&b| letter(b))
        && t[4..10].iter().all(u8::is_ascii_digit)
        && (1..=12).contains(&two(6))
        && (1..=31).contains(&two(8))
        && b"HMX".contains(&t[10])
        && STATES.iter().any(|s| **s == [t[11], t[12]])
        && t[13..16].iter().all(|&b| consonant(b))
        && t[16].is_ascii_alphanumeric()
        && t[17].is_ascii_digit();
    if !shaped || !ends_token(bytes, at + 18) {
        return None;
    }
    // Digits count as themselves, letters from 10 (Ñ, 24, never appears
    // in an ASCII text: N and the letters after it count one more).
    let value = |b: u8| {
        u32::from(match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'N' => b - b'A' + 10,
            _ => b - b'A' + 11,
        })
    };
    let sum: u32 = t[..17]
        .iter()
        .enumerate()
        .map(|(i, &b)| value(b) * (18 - i as u32))
        .sum();
    let check = ((10 - sum % 10) % 10) as u8;
    (t[17] - b'0' == check).then_some(at + 18)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Regions {
        Region::ALL.into_iter().fold(Regions::NONE, Regions::with)
    }

    fn found(text: &str) -> Option<&str> {
        find_national_id(text, 0, all()).map(|(s, e)| &text[s..e])
    }

    #[test]
    fn identity_numbers_are_found_as_people_write_them() {
        for (text, want) in [
            ("meu CPF é 529.982.247-25, obrigado", "529.982.247-25"),
            ("cpf 52998224725", "52998224725"),
            ("DNI 12345678Z", "12345678Z"),
            ("dni: 12345678-z.", "12345678-z"),
            ("NIE X1234567L", "X1234567L"),
            ("nie y-0000000-z", "y-0000000-z"),
            ("RUT 12.345.678-5", "12.345.678-5"),
            ("rut 7.654.321-6 gracias", "7.654.321-6"),
            ("12345670-K", "12345670-K"),
            ("Aadhaar 2345 6789 0124", "2345 6789 0124"),
            ("234567890124", "234567890124"),
            ("PAN ABCPE1234F", "ABCPE1234F"),
            ("NIF 123 456 789", "123 456 789"),
            ("contribuinte 123456789", "123456789"),
            ("codice fiscale RSSMRA85T10A562S.", "RSSMRA85T10A562S"),
            ("cf: mrtmtt91d08f205j", "mrtmtt91d08f205j"),
            ("Steuer-ID 86095742719", "86095742719"),
            ("IdNr 86 095 742 719.", "86 095 742 719"),
            ("NI number AB123456C", "AB123456C"),
            ("ni: jg 10 37 59 a, thanks", "jg 10 37 59 a"),
            ("CURP HEGG560427MVZRRL04", "HEGG560427MVZRRL04"),
            ("mi curp es loaa531113htcpbn07", "loaa531113htcpbn07"),
        ] {
            assert_eq!(found(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn numbers_that_fail_their_check_stay() {
        for text in [
            "529.982.247-26",
            "111.111.111-11",
            "12345678A",
            "X1234567A",
            "12.345.678-6",
            "2345 6789 0125",
            "134567890124",
            "ABCXE1234F",
            "abcpe1234f",
            "123 456 788",
            "order 4123456789",
            "ref529.982.247-25",
            "529.982.247-25-1",
            "12345678Zx",
            "RSSMRA85T10A562T",
            "RSSMRA85Z10A562S",
            "XRSSMRA85T10A562S",
            "86095742718",
            "06095742719",
            "11111111116",
            "86 0957 42719",
            "QQ123456C",
            "GB123456A",
            "AO123456A",
            "AB123456E",
            "AB 123456C",
            "AB12345C",
            "HEGG560427MVZRRL05",
            "HEGG561327MVZRRL04",
            "HEGG560427MXXRRL04",
            "HEGG560427MVZRAL04",
        ] {
            assert_eq!(found(text), None, "{text:?}");
        }
    }

    #[test]
    fn only_the_countries_named_are_searched() {
        let spain = Regions::NONE.with(Region::Spain);
        let text = "CPF 529.982.247-25, DNI 12345678Z";
        assert_eq!(find_national_id(text, 0, spain), Some((24, 33)));
        let colombia = Regions::NONE.with(Region::Colombia);
        assert_eq!(find_national_id(text, 0, colombia), None);
        assert!(!known(Region::Colombia) && known(Region::Brazil));
    }

    #[test]
    fn a_partial_mask_keeps_the_last_two() {
        let mut out = String::new();
        crate::redact::finance::partial_marks("529.982.247-25", 0, 2, &mut out);
        assert_eq!(out, "***.***.***-25");
    }

    #[test]
    fn check_schemes_hold_for_published_examples() {
        // Verhoeff's own example: 236 with its check digit 3.
        assert!(verhoeff(&[2, 3, 6, 3]));
        assert!(!verhoeff(&[2, 3, 6, 4]));
        assert_eq!(dni_letter(12_345_678), b'Z');
    }

    #[test]
    fn no_panic_on_odd_text() {
        for text in [
            "",
            "1",
            "X",
            "X-",
            "12.345.",
            "12.345.678-",
            "529.982.247-",
            "ABCPE",
            "1234 5678 ",
            "é529.982.247-25",
            "12345678-é",
        ] {
            let _ = found(text);
        }
    }
}

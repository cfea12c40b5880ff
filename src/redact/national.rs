//! National phone numbers of the countries a business serves: what
//! customers type in a chat without a `+`, a trunk `0` or a link's key
//! (`612 345 678` in Spain, `98765 43210` in India, `(11) 91234-5678` in
//! Brazil).
//!
//! The default detection leaves such digit runs alone, because in most
//! bodies a bare run of nine or ten digits is an id. A redaction rule
//! names the countries whose numbers it should find (`countries`),
//! and for those a run is a number when it fits that country's numbering
//! plan: its length and leading digits, as a national number or after
//! the country calling code (`34 612 345 678`, `5511912345678`). Each
//! country added also masks ids that happen to have its numbers' shape,
//! which is why none is on by default.
//!
//! Numbers written with a trunk `0` (the UK's `07700 900123`, Germany's
//! `0151 …`, France, Turkey, Indonesia, …) and North America's need
//! nothing here: the default detection finds them. Naming the UK or
//! Germany adds their mobiles typed without it (`447700900123`, a WhatsApp
//! id, or `7700 900123`).

use super::Groups;

/// A country whose national numbers (and identity numbers, see
/// `national_id`) a rule's `countries` can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Region {
    Brazil,
    Chile,
    Colombia,
    Germany,
    Spain,
    UnitedKingdom,
    India,
    Italy,
    Mexico,
    Peru,
    Portugal,
}

impl Region {
    /// In the order of their codes.
    pub const ALL: [Region; 11] = [
        Region::Brazil,
        Region::Chile,
        Region::Colombia,
        Region::Germany,
        Region::Spain,
        Region::UnitedKingdom,
        Region::India,
        Region::Italy,
        Region::Mexico,
        Region::Peru,
        Region::Portugal,
    ];

    /// The ISO 3166-1 alpha-2 code (`ES`), in either case.
    pub fn parse(code: &str) -> Option<Region> {
        Region::ALL
            .into_iter()
            .find(|r| r.code().eq_ignore_ascii_case(code))
    }

    pub fn code(self) -> &'static str {
        match self {
            Region::Brazil => "BR",
            Region::Chile => "CL",
            Region::Colombia => "CO",
            Region::Germany => "DE",
            Region::UnitedKingdom => "GB",
            Region::India => "IN",
            Region::Italy => "IT",
            Region::Mexico => "MX",
            Region::Peru => "PE",
            Region::Portugal => "PT",
            Region::Spain => "ES",
        }
    }

    fn calling_code(self) -> &'static [u8] {
        match self {
            Region::Brazil => b"55",
            Region::Chile => b"56",
            Region::Colombia => b"57",
            Region::Germany => b"49",
            Region::UnitedKingdom => b"44",
            Region::India => b"91",
            Region::Italy => b"39",
            Region::Mexico => b"52",
            Region::Peru => b"51",
            Region::Portugal => b"351",
            Region::Spain => b"34",
        }
    }

    /// Whether `d` (the digits of a number, in order) is a national number
    /// of this country. `separated`: written with separators between
    /// groups, which a shape that timestamps share (Brazil's ten-digit
    /// landlines: `1733212345`) needs before it counts.
    fn national(self, d: &[u8], separated: bool) -> bool {
        let Some(&first) = d.first() else {
            return false;
        };
        match self {
            // Mobiles 6 and 7, landlines 8 and 9; nine digits.
            Region::Spain => d.len() == 9 && matches!(first, b'6'..=b'9'),
            // Mobiles 9, landlines 2; nine digits.
            Region::Portugal => d.len() == 9 && matches!(first, b'2' | b'9'),
            // Mobiles 9, landlines 2 (Santiago) to 7; nine digits.
            Region::Chile => d.len() == 9 && matches!(first, b'2'..=b'9'),
            // Mobiles: nine digits from 9.
            Region::Peru => d.len() == 9 && first == b'9',
            // Mobiles without their trunk 0: 15x, 16x, 17x and ten or
            // eleven digits. (With the 0 the default detection finds them.)
            // Ten bare digits from 15 to 17 are also a Unix timestamp
            // (2017 to 2027): those count only when grouped.
            Region::Germany => {
                first == b'1'
                    && matches!(d.get(1), Some(b'5'..=b'7'))
                    && match d.len() {
                        11 => true,
                        10 => separated,
                        _ => false,
                    }
            }
            // Mobiles without their trunk 0: ten digits from 7.
            Region::UnitedKingdom => d.len() == 10 && first == b'7',
            // Mobiles: ten digits from 3. (Landlines keep their leading 0,
            // which the default detection reads as a trunk.)
            Region::Italy => d.len() == 10 && first == b'3',
            // Mobiles 3, landlines 60 and a one-digit area; ten digits.
            Region::Colombia => d.len() == 10 && (first == b'3' || d.starts_with(b"60")),
            // Mobiles: ten digits from 6 to 9.
            Region::India => d.len() == 10 && matches!(first, b'6'..=b'9'),
            // Ten digits, area codes from 2 to 9.
            Region::Mexico => d.len() == 10 && matches!(first, b'2'..=b'9'),
            // A two-digit area code (11 to 99, no 0), then a mobile's nine
            // digits from 9 or a landline's eight from 2 to 5.
            Region::Brazil => {
                let area = d.len() >= 3 && d[..2].iter().all(|b| matches!(b, b'1'..=b'9'));
                area && match d.len() {
                    11 => d[2] == b'9',
                    10 => separated && matches!(d[2], b'2'..=b'5'),
                    _ => false,
                }
            }
        }
    }

    /// Whether a number whose first digit is `b` could be one of this
    /// country's, national or after its calling code.
    fn may_lead(self, b: u8) -> bool {
        self.national_leads(b) || self.calling_code().first() == Some(&b)
    }

    fn national_leads(self, b: u8) -> bool {
        match self {
            Region::Spain | Region::India => matches!(b, b'6'..=b'9'),
            Region::Portugal => matches!(b, b'2' | b'9'),
            Region::Chile => matches!(b, b'2'..=b'9'),
            Region::Peru => b == b'9',
            Region::Germany => b == b'1',
            Region::UnitedKingdom => b == b'7',
            Region::Italy => b == b'3',
            Region::Colombia => matches!(b, b'3' | b'6'),
            Region::Mexico | Region::Brazil => matches!(b, b'1'..=b'9'),
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

// Each country is one bit of `Regions::set`.
const _: () = assert!(Region::ALL.len() <= u16::BITS as usize);

/// A set of [`Region`]s, with the digits their numbers can start with
/// worked out once (most digit runs in a body are ruled out by their first
/// digit alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Regions {
    set: u16,
    /// Bit `d`: a number starting with digit `d` may be one of theirs.
    leads: u16,
}

impl Regions {
    /// No country: the default detection alone.
    pub const NONE: Regions = Regions { set: 0, leads: 0 };

    pub fn with(self, region: Region) -> Regions {
        let mut leads = self.leads;
        for d in b'0'..=b'9' {
            if region.may_lead(d) {
                leads |= 1 << (d - b'0');
            }
        }
        Regions {
            set: self.set | region.bit(),
            leads,
        }
    }

    pub fn union(self, other: Regions) -> Regions {
        Regions {
            set: self.set | other.set,
            leads: self.leads | other.leads,
        }
    }

    pub fn is_empty(self) -> bool {
        self.set == 0
    }

    pub fn contains(self, region: Region) -> bool {
        self.set & region.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Region> {
        Region::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Whether `rest` (after an optional `(`) starts with a digit one of
    /// these countries' numbers can start with.
    pub(super) fn may_begin(self, rest: &[u8]) -> bool {
        let rest = rest.strip_prefix(b"(").unwrap_or(rest);
        rest.first()
            .is_some_and(|b| b.is_ascii_digit() && self.leads & (1 << (b - b'0')) != 0)
    }

    /// Whether the groups `g`, read from `bytes`, are a national number of
    /// one of these countries, or one after its calling code (the calling
    /// code a group of its own when the number has separators).
    pub(super) fn matches(self, bytes: &[u8], from: usize, g: &Groups) -> bool {
        if self.is_empty() || g.is_date() || g.is_dotted_quad() {
            return false;
        }
        let mut digits = [0u8; super::MAX_DIGITS];
        let mut n = 0;
        for &b in &bytes[from..g.end] {
            if b.is_ascii_digit() && n < digits.len() {
                digits[n] = b;
                n += 1;
            }
        }
        let d = &digits[..n];
        let separated = g.separators > 0;
        self.iter().any(|r| {
            let cc = r.calling_code();
            r.national(d, separated)
                || (d.starts_with(cc)
                    && (!separated || g.lens[0] == cc.len())
                    && r.national(&d[cc.len()..], separated))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countries_are_listed_in_the_order_of_their_codes() {
        let codes = Region::ALL.map(Region::code);
        let mut sorted = codes;
        sorted.sort_unstable();
        assert_eq!(codes, sorted);
    }

    #[test]
    fn codes_read_back_in_either_case() {
        for r in Region::ALL {
            assert_eq!(Region::parse(r.code()), Some(r));
            assert_eq!(Region::parse(&r.code().to_lowercase()), Some(r));
        }
        assert_eq!(Region::parse("UK"), None, "ISO 3166: GB");
        assert_eq!(Region::parse(""), None);
    }

    #[test]
    fn a_set_knows_its_countries_and_their_leading_digits() {
        let es = Regions::NONE.with(Region::Spain);
        assert_eq!(es.iter().collect::<Vec<_>>(), [Region::Spain]);
        assert!(es.may_begin(b"612 345 678"));
        assert!(es.may_begin(b"(34) 612"), "the calling code leads too");
        assert!(!es.may_begin(b"512 345 678"));
        assert!(!Regions::NONE.may_begin(b"612"));
        let both = es.union(Regions::NONE.with(Region::Italy));
        assert_eq!(
            both.iter().collect::<Vec<_>>(),
            [Region::Spain, Region::Italy]
        );
        assert!(both.may_begin(b"333"));
        assert_eq!(both, Regions::NONE.with(Region::Italy).with(Region::Spain));
    }

    #[test]
    fn every_countrys_calling_code_and_national_digits_are_leads() {
        for r in Region::ALL {
            for d in b'0'..=b'9' {
                let leads = Regions::NONE.with(r).may_begin(&[d]);
                assert_eq!(
                    leads,
                    r.national_leads(d) || r.calling_code()[0] == d,
                    "{r:?} {}",
                    d as char
                );
            }
        }
    }
}

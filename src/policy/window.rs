//! Time windows: "Monday to Friday, 08:00–18:00, Europe/London, closed on
//! public holidays".
//!
//! A window is wall-clock time in its zone. An instant is converted to the
//! zone's civil date and time (DST-correct: the same window covers
//! 07:00–17:00 UTC in summer and 08:00–18:00 UTC in winter), then compared:
//!
//! - `from` is inclusive, `to` exclusive.
//! - When `to <= from` the window crosses midnight: `22:00–06:00` on Monday
//!   runs from Monday 22:00 to Tuesday 06:00. `days` name the day a window
//!   *starts*, so Tuesday 05:00 belongs to Monday's window and is inside iff
//!   Monday is listed. `to == from` is a 24-hour window starting at `from`
//!   (`00:00–00:00` is the whole day).
//! - A closed date (a public holiday, as a local date in the window's zone)
//!   closes that whole calendar day, and also the part of a
//!   midnight-crossing window that started on it and spills into the next
//!   day: a night shift that does not start does not continue.
//! - On DST switch days the wall clock decides: a window boundary that falls
//!   in a skipped hour is simply never reached, and a repeated hour counts
//!   both times.

use std::fmt;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::error::PolicyError;

/// When a rule allows access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    days: DaySet,
    from: Time,
    to: Time,
    tz: TimeZone,
    /// Sorted, without duplicates, for binary search.
    closed_dates: Vec<Date>,
}

/// A set of weekdays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DaySet(u8);

impl TimeWindow {
    pub fn new(days: DaySet, from: Time, to: Time, tz: TimeZone, closed_dates: Vec<Date>) -> Self {
        let mut closed_dates = closed_dates;
        closed_dates.sort_unstable();
        closed_dates.dedup();
        TimeWindow {
            days,
            from,
            to,
            tz,
            closed_dates,
        }
    }

    /// Whether the instant `ts` falls inside the window (module docs).
    pub fn contains(&self, ts: Timestamp) -> bool {
        let local = self.tz.to_datetime(ts);
        let (date, time) = (local.date(), local.time());
        if self.is_closed(date) {
            return false;
        }
        let crosses_midnight = self.to <= self.from;
        if !crosses_midnight {
            return self.days.contains(date.weekday()) && self.from <= time && time < self.to;
        }
        if time >= self.from {
            return self.days.contains(date.weekday());
        }
        if time < self.to {
            // The tail of the window that started the day before.
            return date.yesterday().is_ok_and(|started| {
                self.days.contains(started.weekday()) && !self.is_closed(started)
            });
        }
        false
    }

    pub fn days(&self) -> DaySet {
        self.days
    }

    pub fn from(&self) -> Time {
        self.from
    }

    pub fn to(&self) -> Time {
        self.to
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    pub fn closed_dates(&self) -> &[Date] {
        &self.closed_dates
    }

    fn is_closed(&self, date: Date) -> bool {
        self.closed_dates.binary_search(&date).is_ok()
    }
}

impl DaySet {
    pub const ALL: DaySet = DaySet(0b111_1111);
    pub const WEEKDAYS: DaySet = DaySet(0b001_1111);
    pub const WEEKEND: DaySet = DaySet(0b110_0000);

    pub fn contains(self, day: Weekday) -> bool {
        self.0 & bit(day) != 0
    }

    pub fn with(self, day: Weekday) -> DaySet {
        DaySet(self.0 | bit(day))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}-{} {}",
            self.days,
            self.from.strftime("%H:%M"),
            self.to.strftime("%H:%M"),
            self.tz.iana_name().unwrap_or("(fixed offset)")
        )?;
        if !self.closed_dates.is_empty() {
            write!(f, ", {} closed dates", self.closed_dates.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for DaySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = WEEK
            .iter()
            .filter(|(_, day)| self.contains(*day))
            .map(|(name, _)| *name)
            .collect();
        f.write_str(&names.join(","))
    }
}

/// Parses `days:` entries: `mon` … `sun`, ranges such as `mon-fri` (a range
/// may wrap: `fri-mon` is Friday to Monday), `weekdays`, `weekend`, `all`.
/// Case-insensitive. An empty list is refused: a window open on no day is a
/// typo, and on an enforcing rule it would lock everyone out.
pub fn parse_days(entries: &[&str]) -> Result<DaySet, PolicyError> {
    let mut days = DaySet::default();
    for entry in entries {
        let text = entry.trim().to_ascii_lowercase();
        let parsed = match text.as_str() {
            "all" => DaySet::ALL,
            "weekdays" => DaySet::WEEKDAYS,
            "weekend" => DaySet::WEEKEND,
            _ => match text.split_once('-') {
                Some((first, last)) => day_range(first, last),
                None => weekday(&text).map(|day| DaySet::default().with(day)),
            }
            .ok_or_else(|| PolicyError::BadDay {
                text: (*entry).to_owned(),
            })?,
        };
        days = DaySet(days.0 | parsed.0);
    }
    if days.is_empty() {
        return Err(PolicyError::NoDays);
    }
    Ok(days)
}

/// Parses a wall-clock time `HH:MM` (or `HH:MM:SS`), 24-hour clock.
pub fn parse_time(text: &str) -> Result<Time, PolicyError> {
    let bad = || PolicyError::BadTime {
        text: text.to_owned(),
    };
    let mut parts = text.split(':');
    let hour = two_digits(parts.next()).ok_or_else(bad)?;
    let minute = two_digits(parts.next()).ok_or_else(bad)?;
    let second = match parts.next() {
        None => 0,
        Some(s) => two_digits(Some(s)).ok_or_else(bad)?,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Time::new(hour, minute, second, 0).map_err(|_| bad())
}

/// Parses a closed date, `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Result<Date, PolicyError> {
    text.parse::<Date>().map_err(|_| PolicyError::BadDate {
        text: text.to_owned(),
    })
}

/// Looks up an IANA time zone in the bundled database.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, PolicyError> {
    TimeZone::get(name).map_err(|_| PolicyError::BadTimeZone {
        name: name.to_owned(),
    })
}

const WEEK: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn bit(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

fn weekday(name: &str) -> Option<Weekday> {
    WEEK.iter().find(|(n, _)| *n == name).map(|(_, day)| *day)
}

fn day_range(first: &str, last: &str) -> Option<DaySet> {
    let first = weekday(first)?;
    let last = weekday(last)?;
    let mut days = DaySet::default().with(first);
    let mut day = first;
    while day != last {
        day = day.next();
        days = days.with(day);
    }
    Some(days)
}

fn two_digits(part: Option<&str>) -> Option<i8> {
    let part = part?;
    if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should be a timestamp: {e}"))
    }

    fn window(days: &[&str], from: &str, to: &str, tz: &str, closed: &[&str]) -> TimeWindow {
        let build = || -> Result<TimeWindow, PolicyError> {
            Ok(TimeWindow::new(
                parse_days(days)?,
                parse_time(from)?,
                parse_time(to)?,
                parse_time_zone(tz)?,
                closed
                    .iter()
                    .map(|d| parse_date(d))
                    .collect::<Result<_, _>>()?,
            ))
        };
        build().unwrap_or_else(|e| panic!("test window should build: {e}"))
    }

    fn check(w: &TimeWindow, cases: &[(&str, bool, &str)]) {
        for (ts, want, why) in cases {
            assert_eq!(
                w.contains(at(ts)),
                *want,
                "{ts} should be {} {w}: {why}",
                if *want { "inside" } else { "outside" }
            );
        }
    }

    #[test]
    fn office_hours_follow_london_dst() {
        let w = window(&["all"], "08:00", "18:00", "Europe/London", &[]);
        check(
            &w,
            &[
                (
                    "2026-03-28T07:30:00Z",
                    false,
                    "07:30 GMT the day before spring forward",
                ),
                ("2026-03-28T08:00:00Z", true, "08:00 GMT, from is inclusive"),
                (
                    "2026-03-29T07:30:00Z",
                    true,
                    "08:30 BST on the spring-forward day",
                ),
                ("2026-03-29T06:59:59Z", false, "07:59:59 BST"),
                ("2026-03-29T07:00:00Z", true, "08:00 BST"),
                ("2026-03-29T16:59:59Z", true, "17:59:59 BST"),
                ("2026-03-29T17:00:00Z", false, "18:00 BST, to is exclusive"),
                ("2026-03-29T17:30:00Z", false, "18:30 BST"),
                (
                    "2026-10-24T07:30:00Z",
                    true,
                    "08:30 BST the day before fall back",
                ),
                (
                    "2026-10-25T07:30:00Z",
                    false,
                    "07:30 GMT on the fall-back day",
                ),
                ("2026-10-25T08:00:00Z", true, "08:00 GMT"),
                ("2026-10-25T17:30:00Z", true, "17:30 GMT"),
                ("2026-10-25T18:00:00Z", false, "18:00 GMT"),
            ],
        );
    }

    #[test]
    fn windows_in_the_switched_hours_use_the_wall_clock() {
        // 01:00-02:00 local does not exist on 2026-03-29 and happens twice
        // on 2026-10-25 in London.
        let w = window(&["sun"], "01:00", "02:00", "Europe/London", &[]);
        check(
            &w,
            &[
                (
                    "2026-03-29T00:59:59Z",
                    false,
                    "00:59:59 GMT, just before the gap",
                ),
                (
                    "2026-03-29T01:00:00Z",
                    false,
                    "02:00 BST: the skipped hour is never inside",
                ),
                ("2026-10-25T00:30:00Z", true, "01:30 BST, first occurrence"),
                ("2026-10-25T01:30:00Z", true, "01:30 GMT, the repeated hour"),
                ("2026-10-25T02:00:00Z", false, "02:00 GMT"),
            ],
        );
    }

    #[test]
    fn midnight_crossing_windows_belong_to_their_start_day() {
        // 2026-03-02 is a Monday.
        let w = window(&["mon"], "22:00", "06:00", "UTC", &[]);
        check(
            &w,
            &[
                (
                    "2026-03-02T21:59:59Z",
                    false,
                    "Monday before the window opens",
                ),
                (
                    "2026-03-02T22:00:00Z",
                    true,
                    "Monday 22:00 opens Monday's window",
                ),
                ("2026-03-02T23:00:00Z", true, "Monday 23:00"),
                (
                    "2026-03-03T05:00:00Z",
                    true,
                    "Tuesday 05:00 belongs to Monday's window",
                ),
                (
                    "2026-03-03T06:00:00Z",
                    false,
                    "Tuesday 06:00, to is exclusive",
                ),
                (
                    "2026-03-03T23:00:00Z",
                    false,
                    "Tuesday night: Tuesday is not listed",
                ),
                (
                    "2026-03-02T05:00:00Z",
                    false,
                    "Monday 05:00 belongs to Sunday's window",
                ),
                (
                    "2026-03-02T12:00:00Z",
                    false,
                    "Monday noon is between the two parts",
                ),
            ],
        );
    }

    #[test]
    fn midnight_crossing_over_dst_switch() {
        // Saturday night into the spring-forward Sunday, London.
        let w = window(&["sat"], "22:00", "06:00", "Europe/London", &[]);
        check(
            &w,
            &[
                ("2026-03-28T22:30:00Z", true, "Saturday 22:30 GMT"),
                (
                    "2026-03-29T04:30:00Z",
                    true,
                    "Sunday 05:30 BST, still Saturday's window",
                ),
                (
                    "2026-03-29T05:00:00Z",
                    false,
                    "Sunday 06:00 BST, window closed",
                ),
            ],
        );
    }

    #[test]
    fn equal_bounds_mean_a_whole_day() {
        let w = window(&["weekdays"], "00:00", "00:00", "Europe/Berlin", &[]);
        check(
            &w,
            &[
                ("2026-03-02T12:00:00Z", true, "Monday noon"),
                ("2026-03-06T22:59:59Z", true, "Friday 23:59:59 CET"),
                ("2026-03-06T23:00:00Z", false, "Saturday 00:00 CET"),
            ],
        );
    }

    #[test]
    fn closed_dates_close_the_local_day_and_the_night_that_starts_on_it() {
        let office = window(
            &["weekdays"],
            "08:00",
            "18:00",
            "Europe/London",
            &["2026-12-25"],
        );
        check(
            &office,
            &[
                ("2026-12-24T12:00:00Z", true, "Thursday before Christmas"),
                ("2026-12-25T12:00:00Z", false, "Christmas Day is closed"),
                ("2026-12-28T12:00:00Z", true, "the next Monday"),
            ],
        );
        let night = window(&["all"], "22:00", "06:00", "Europe/London", &["2026-12-25"]);
        check(
            &night,
            &[
                ("2026-12-24T23:00:00Z", true, "Christmas Eve night"),
                (
                    "2026-12-25T03:00:00Z",
                    false,
                    "Christmas Day early morning is closed",
                ),
                (
                    "2026-12-25T23:00:00Z",
                    false,
                    "Christmas night starts on a closed day",
                ),
                (
                    "2026-12-26T03:00:00Z",
                    false,
                    "the tail of Christmas night stays closed",
                ),
                ("2026-12-26T23:00:00Z", true, "Boxing Day night is open"),
            ],
        );
        // Local date, not UTC date: 23:30 UTC on 24 Dec is 25 Dec in Tokyo.
        let tokyo = window(&["all"], "00:00", "00:00", "Asia/Tokyo", &["2026-12-25"]);
        check(
            &tokyo,
            &[("2026-12-24T15:30:00Z", false, "00:30 JST on a closed date")],
        );
    }

    #[test]
    fn days_parse() {
        use Weekday::*;
        let cases: &[(&[&str], &[Weekday])] = &[
            (&["mon"], &[Monday]),
            (
                &["mon-fri"],
                &[Monday, Tuesday, Wednesday, Thursday, Friday],
            ),
            (
                &["weekdays"],
                &[Monday, Tuesday, Wednesday, Thursday, Friday],
            ),
            (&["weekend"], &[Saturday, Sunday]),
            (&["fri-mon"], &[Friday, Saturday, Sunday, Monday]),
            (&["Sat", "sun", "wed"], &[Wednesday, Saturday, Sunday]),
            (&["thu-thu"], &[Thursday]),
            (
                &["all"],
                &[
                    Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
                ],
            ),
        ];
        for (entries, want) in cases {
            let days =
                parse_days(entries).unwrap_or_else(|e| panic!("{entries:?} should parse: {e}"));
            let expected = want.iter().fold(DaySet::default(), |set, d| set.with(*d));
            assert_eq!(days, expected, "{entries:?} should mean {want:?}");
        }
    }

    #[test]
    fn bad_config_values_are_typed_errors() {
        let bad_days: &[&[&str]] = &[&[], &["monday"], &["mon-"], &["mon-xyz"], &[""]];
        for entries in bad_days {
            assert!(
                parse_days(entries).is_err(),
                "{entries:?} should be refused"
            );
        }
        for text in [
            "8:30",
            "24:00",
            "08:60",
            "08-30",
            "08:30:00:00",
            "",
            "ab:cd",
            "+8:30",
        ] {
            assert_eq!(
                parse_time(text),
                Err(PolicyError::BadTime {
                    text: text.to_owned()
                }),
                "{text:?} should be refused as a time"
            );
        }
        assert_eq!(
            parse_time("08:30").map(|t| (t.hour(), t.minute())),
            Ok((8, 30)),
            "08:30 should parse"
        );
        assert_eq!(
            parse_time_zone("Europe/Lodnon")
                .err()
                .map(|e| e.to_string()),
            Some(
                "time zone `Europe/Lodnon` is unknown: use an IANA name such as Europe/London"
                    .to_owned()
            ),
            "a misspelt zone should be refused with a typed error"
        );
        assert!(
            parse_date("2026-02-30").is_err(),
            "30 February should be refused"
        );
    }
}

//! `resource.Quantity`: parsing the string form (`100m`, `1.5`, `128Mi`, `1G`, `1e3`), exact
//! arithmetic in milli-units, comparison and formatting back to a canonical string.
//!
//! A [`Quantity`] keeps its value as an `i128` count of milli-units (what the scheduler compares for
//! cpu) and remembers which suffix family it was written in so formatting stays in that family.
//! Values finer than a milli-unit are rounded up, as upstream's `MilliValue` does.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Sub};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

/// Why a quantity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string was empty.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Empty,
    /// The numeric part is not a number.
    #[error("quantity {0:?}: invalid number")]
    Number(String),
    /// The suffix is not one of the known ones.
    #[error("quantity {0:?}: unable to parse quantity's suffix")]
    Suffix(String),
    /// The value does not fit the supported range.
    #[error("quantity {0:?}: value too large")]
    Overflow(String),
}

/// Which family of suffixes a quantity was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Powers of two: `Ki`, `Mi`, `Gi`, ...
    BinarySI,
    /// Powers of ten with SI letters: `m`, `k`, `M`, `G`, ...
    DecimalSI,
    /// Powers of ten written as `e<n>`.
    DecimalExponent,
}

/// An exact resource quantity in milli-units.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    milli: i128,
    format: Format,
}

impl Quantity {
    /// Zero, in decimal form.
    pub const ZERO: Quantity = Quantity {
        milli: 0,
        format: Format::DecimalSI,
    };

    /// A quantity of `milli` thousandths of a unit (e.g. cpu millicores).
    pub fn from_milli(milli: i128) -> Self {
        Quantity {
            milli,
            format: Format::DecimalSI,
        }
    }

    /// A quantity of whole units in the given format (e.g. bytes in [`Format::BinarySI`]).
    pub fn from_units(units: i128, format: Format) -> Self {
        Quantity {
            milli: units.saturating_mul(1000),
            format,
        }
    }

    /// Parses the string form.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        parse(input)
    }

    /// The value in milli-units (cpu: millicores).
    pub fn milli_value(&self) -> i128 {
        self.milli
    }

    /// The value in whole units, rounded up (memory: bytes; pods: count).
    pub fn value(&self) -> i128 {
        ceil_div(self.milli, 1000)
    }

    /// The suffix family this quantity is formatted in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.milli == 0
    }

    /// The k8s-openapi wrapper holding the canonical string.
    pub fn to_api(&self) -> ApiQuantity {
        ApiQuantity(self.to_string())
    }
}

impl TryFrom<&ApiQuantity> for Quantity {
    type Error = QuantityError;

    fn try_from(value: &ApiQuantity) -> Result<Self, Self::Error> {
        parse(&value.0)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl Add for Quantity {
    type Output = Quantity;

    /// Saturating addition; the left operand's format wins (as upstream's `Add`).
    fn add(self, rhs: Self) -> Self::Output {
        let format = if self.milli == 0 {
            rhs.format
        } else {
            self.format
        };
        Quantity {
            milli: self.milli.saturating_add(rhs.milli),
            format,
        }
    }
}

impl Sub for Quantity {
    type Output = Quantity;

    /// Saturating subtraction; the left operand's format wins.
    fn sub(self, rhs: Self) -> Self::Output {
        Quantity {
            milli: self.milli.saturating_sub(rhs.milli),
            format: self.format,
        }
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i128 {
    let quotient = numerator / denominator;
    if numerator % denominator != 0 && (numerator > 0) == (denominator > 0) {
        quotient + 1
    } else {
        quotient
    }
}

/// Splits `input` into (sign, digits before '.', digits after '.', suffix).
fn split_number(input: &str) -> Result<(bool, &str, &str, &str), QuantityError> {
    let (negative, rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        Some(_) => (false, input),
        None => return Err(QuantityError::Empty),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) => {
            if fraction.contains('.') {
                return Err(QuantityError::Number(input.to_string()));
            }
            (whole, fraction)
        }
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(QuantityError::Number(input.to_string()));
    }
    Ok((negative, whole, fraction, suffix))
}

/// A suffix as (base, exponent, format): the multiplier is `base^exponent`.
fn parse_suffix(suffix: &str, input: &str) -> Result<(u32, i32, Format), QuantityError> {
    let binary = |power: i32| Ok((2, power, Format::BinarySI));
    let decimal = |power: i32| Ok((10, power, Format::DecimalSI));
    match suffix {
        "" => decimal(0),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        _ => {
            let exponent = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(|| QuantityError::Suffix(input.to_string()))?;
            let valid = !exponent.is_empty()
                && exponent
                    .trim_start_matches(['+', '-'])
                    .chars()
                    .all(|c| c.is_ascii_digit())
                && exponent.len() - exponent.trim_start_matches(['+', '-']).len() <= 1;
            if !valid {
                return Err(QuantityError::Suffix(input.to_string()));
            }
            let power: i32 = exponent
                .parse()
                .map_err(|_| QuantityError::Suffix(input.to_string()))?;
            Ok((10, power, Format::DecimalExponent))
        }
    }
}

fn parse(input: &str) -> Result<Quantity, QuantityError> {
    let overflow = || QuantityError::Overflow(input.to_string());
    let (negative, whole, fraction, suffix) = split_number(input)?;
    let (base, power, format) = parse_suffix(suffix, input)?;
    // Trailing zeros of the fraction carry no value and would only risk overflow.
    let fraction = fraction.trim_end_matches('0');
    let whole = whole.trim_start_matches('0');
    let digits = format!("{whole}{fraction}");
    if digits.len() > 30 || power.abs() > 60 {
        return Err(overflow());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| QuantityError::Number(input.to_string()))?
    };
    // value = mantissa * base^power / 10^fraction_len, in milli-units: * 1000.
    let mut numerator = mantissa.checked_mul(1000).ok_or_else(overflow)?;
    let mut denominator: i128 = 10i128
        .checked_pow(u32::try_from(fraction.len()).map_err(|_| overflow())?)
        .ok_or_else(overflow)?;
    let factor = i128::from(base)
        .checked_pow(power.unsigned_abs())
        .ok_or_else(overflow)?;
    if power >= 0 {
        numerator = numerator.checked_mul(factor).ok_or_else(overflow)?;
    } else {
        denominator = denominator.checked_mul(factor).ok_or_else(overflow)?;
    }
    let milli = ceil_div(numerator, denominator);
    Ok(Quantity {
        milli: if negative { -milli } else { milli },
        format,
    })
}

impl fmt::Display for Quantity {
    /// The canonical form: the largest suffix of the quantity's family that keeps the number whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli == 0 {
            return f.write_str("0");
        }
        let sign = if self.milli < 0 { "-" } else { "" };
        let milli = self.milli.unsigned_abs();
        if !milli.is_multiple_of(1000) {
            return write!(f, "{sign}{milli}m");
        }
        let units = milli / 1000;
        match self.format {
            Format::BinarySI => {
                const SUFFIXES: [&str; 6] = ["Ei", "Pi", "Ti", "Gi", "Mi", "Ki"];
                for (index, suffix) in SUFFIXES.iter().enumerate() {
                    let shift = 10 * (SUFFIXES.len() - index);
                    let unit = 1u128 << shift;
                    if units.is_multiple_of(unit) {
                        return write!(f, "{sign}{}{suffix}", units / unit);
                    }
                }
                // Not a whole number of Ki: upstream falls back to decimal notation.
                write_decimal(f, sign, units)
            }
            Format::DecimalSI => write_decimal(f, sign, units),
            Format::DecimalExponent => {
                let mut mantissa = units;
                let mut exponent = 0;
                while mantissa.is_multiple_of(1000) {
                    mantissa /= 1000;
                    exponent += 3;
                }
                if exponent == 0 {
                    write!(f, "{sign}{mantissa}")
                } else {
                    write!(f, "{sign}{mantissa}e{exponent}")
                }
            }
        }
    }
}

fn write_decimal(f: &mut fmt::Formatter<'_>, sign: &str, units: u128) -> fmt::Result {
    const SUFFIXES: [(&str, u32); 6] = [
        ("E", 18),
        ("P", 15),
        ("T", 12),
        ("G", 9),
        ("M", 6),
        ("k", 3),
    ];
    for (suffix, power) in SUFFIXES {
        let unit = 10u128.pow(power);
        if units.is_multiple_of(unit) {
            return write!(f, "{sign}{}{suffix}", units / unit);
        }
    }
    write!(f, "{sign}{units}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms_to_milli_units() {
        let cases: &[(&str, i128)] = &[
            ("100m", 100),
            ("1", 1000),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("128Mi", 128 * 1024 * 1024 * 1000),
            ("1G", 1_000_000_000_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("2Ki", 2048 * 1000),
            ("1k", 1_000_000),
            ("+3", 3000),
            ("-2", -2000),
            ("1n", 1),
            ("500u", 1),
            ("0", 0),
            ("1.000", 1000),
            ("8Ei", 8 * (1i128 << 60) * 1000),
            ("1e-3", 1),
        ];
        for (input, milli) in cases {
            let quantity = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(quantity.milli_value(), *milli, "{input}");
        }
    }

    #[test]
    fn rejects_bad_input() {
        for input in [
            "", "abc", "1Zi", "1..2", "1.2.3", "Mi", "1e", "1e+-3", "1 Mi", "--1",
        ] {
            assert!(
                Quantity::parse(input).is_err(),
                "{input:?} should not parse"
            );
        }
    }

    #[test]
    fn value_rounds_up_to_whole_units() {
        assert_eq!(Quantity::parse("100m").map(|q| q.value()), Ok(1));
        assert_eq!(Quantity::parse("128Mi").map(|q| q.value()), Ok(134_217_728));
        assert_eq!(Quantity::parse("1.5").map(|q| q.value()), Ok(2));
    }

    #[test]
    fn formats_in_the_canonical_form_of_its_family() {
        let cases = [
            ("100m", "100m"),
            ("1000m", "1"),
            ("1536Mi", "1536Mi"),
            ("1024Mi", "1Gi"),
            ("1000k", "1M"),
            ("1e3", "1e3"),
            ("1.5", "1500m"),
            ("0", "0"),
            ("-2Ki", "-2Ki"),
            ("3", "3"),
        ];
        for (input, output) in cases {
            let quantity = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(quantity.to_string(), output, "{input}");
        }
    }

    #[test]
    fn adds_subtracts_and_compares_exactly() -> Result<(), QuantityError> {
        let a = Quantity::parse("1")?;
        let b = Quantity::parse("250m")?;
        assert_eq!((a + b).milli_value(), 1250);
        assert_eq!((a - b).milli_value(), 750);
        assert!(b < a);
        assert_eq!(Quantity::parse("1Ki")?, Quantity::parse("1024")?);
        assert_eq!(
            (Quantity::ZERO + Quantity::parse("1Mi")?).to_string(),
            "1Mi"
        );
        Ok(())
    }

    #[test]
    fn converts_from_the_api_wrapper() {
        let api = ApiQuantity("2Gi".to_string());
        assert_eq!(
            Quantity::try_from(&api).map(|q| q.value()),
            Ok(2 * 1024 * 1024 * 1024)
        );
        assert_eq!(Quantity::from_milli(500).to_api().0, "500m");
    }
}

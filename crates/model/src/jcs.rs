//! RFC 8785 JSON Canonicalization Scheme (JCS) over [`serde_json::Value`].
//!
//! The canonical form is the byte string that hashes and signatures of the
//! journal are computed over. It follows RFC 8785 §3.2:
//!
//! - §3.2.1: no whitespace between tokens;
//! - §3.2.2.1: literals `null`, `true`, `false` as is;
//! - §3.2.2.2: strings escaped minimally (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
//!   `\t`, other controls below U+0020 as lowercase `\u00xx`), every other
//!   character, including `/`, DEL and non-ASCII, written as literal UTF-8;
//! - §3.2.2.3: numbers serialized as IEEE 754 doubles exactly like ECMAScript
//!   `Number.prototype.toString` (shortest round-trip digits, `-0` as `0`,
//!   exponent form when `|x| < 1e-6` or `|x| >= 1e21`); NaN and Infinity are
//!   errors;
//! - §3.2.3: object members sorted by the UTF-16 code units of their names.
//!
//! Integers held by `serde_json` as `u64`/`i64` go through `f64` as RFC 8785
//! requires (I-JSON numbers are doubles), so `2^53 + 1` is written as
//! `9007199254740992`. Callers that need exact large integers must carry them
//! as strings.

use serde_json::{Map, Number, Value};

/// Errors raised while canonicalizing a JSON value.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JcsError {
    /// NaN or ±Infinity, which JSON cannot express (RFC 8785 §3.2.2.3).
    #[error("NaN and Infinity have no JSON representation (RFC 8785 §3.2.2.3)")]
    NonFinite,
    /// A number that does not fit an IEEE 754 double (only possible when
    /// `serde_json`'s `arbitrary_precision` feature is enabled).
    #[error("number {0} is outside the IEEE 754 double range (RFC 8785 §3.2.2.3)")]
    OutOfRange(String),
}

/// Writes the RFC 8785 canonical form of `value` into `out`.
///
/// The bytes are appended; on error `out` is left unchanged.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
    let canonical = to_canonical_string(value)?;
    out.extend_from_slice(canonical.as_bytes());
    Ok(())
}

/// Returns the RFC 8785 canonical form of `value` as bytes.
pub fn to_canonical_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    to_canonical_string(value).map(String::into_bytes)
}

/// Returns the RFC 8785 canonical form of `value` as a string.
pub fn to_canonical_string(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(value, &mut out)?;
    Ok(out)
}

/// Formats an f64 exactly as ECMAScript Number.prototype.toString (RFC 8785 §3.2.2.3).
pub fn format_number(n: f64) -> Result<String, JcsError> {
    let mut out = String::new();
    write_f64(n, &mut out)?;
    Ok(out)
}

/// Lowercase hexadecimal digits for `\u00xx` escapes.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Largest ECMAScript decimal-point position written without an exponent.
const MAX_PLAIN_POSITION: i32 = 21;

/// Smallest ECMAScript decimal-point position written without an exponent.
const MIN_PLAIN_POSITION: i32 = -5;

fn write_value(value: &Value, out: &mut String) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_json_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out)?;
            }
            out.push(']');
        }
        Value::Object(members) => write_object(members, out)?,
    }
    Ok(())
}

/// Writes an object with its members sorted by the UTF-16 code units of
/// their names (RFC 8785 §3.2.3). Sorting by UTF-8 bytes or by code points
/// would differ for names mixing U+E000..U+FFFF with supplementary planes.
fn write_object(members: &Map<String, Value>, out: &mut String) -> Result<(), JcsError> {
    let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
    // Names are unique within a `Map`, so an unstable sort is deterministic.
    sorted.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
    out.push('{');
    for (i, (name, member)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(member, out)?;
    }
    out.push('}');
    Ok(())
}

/// Writes a string with the minimal escaping of RFC 8785 §3.2.2.2.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every escaped byte is ASCII, hence on a char boundary.
        out.push_str(&s[run_start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        } else {
            out.push_str(escape);
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// Writes a `serde_json` number through its IEEE 754 double value.
///
/// `Number::as_f64` converts `u64`/`i64` with round-to-nearest-even, which
/// is the conversion ECMAScript applies when parsing the integer literal.
fn write_json_number(n: &Number, out: &mut String) -> Result<(), JcsError> {
    match n.as_f64() {
        Some(f) => write_f64(f, out),
        None => Err(JcsError::OutOfRange(n.to_string())),
    }
}

/// Writes `n` following ECMA-262 Number::toString (radix 10).
fn write_f64(n: f64, out: &mut String) -> Result<(), JcsError> {
    if !n.is_finite() {
        return Err(JcsError::NonFinite);
    }
    // Covers -0 as well, which ECMAScript writes as "0".
    if n == 0.0 {
        out.push('0');
        return Ok(());
    }
    if n < 0.0 {
        out.push('-');
    }
    let (digits, point) = shortest_digits(n.abs());
    layout_digits(&digits, point, out);
    Ok(())
}

/// Returns the shortest round-trip decimal digits of a finite, positive `n`
/// and the ECMAScript position `point` of the decimal point, such that
/// `n = 0.digits × 10^point`.
///
/// Rust's `{:e}` formatting emits the shortest digit string that round-trips
/// and, among those, the one closest to `n`. ECMA-262 additionally breaks an
/// exact tie between two such strings towards the even one, which Rust does
/// not (it writes `1424953923781206.3` for `1424953923781206.25`), so ties
/// are resolved by [`prefer_even_on_tie`].
fn shortest_digits(n: f64) -> (String, i32) {
    let (mut digits, exponent) = scientific_digits(&format!("{n:e}"));
    let point = exponent + 1;
    prefer_even_on_tie(n, &mut digits, point);
    (digits, point)
}

/// Splits Rust's `{:e}` output (`d[.ddd]e[-]x`) into its significant digits,
/// without trailing zeros, and its decimal exponent `x`.
fn scientific_digits(scientific: &str) -> (String, i32) {
    let mut digits = String::with_capacity(scientific.len());
    let mut exponent: i32 = 0;
    let mut exponent_negative = false;
    let mut in_exponent = false;
    for byte in scientific.bytes() {
        match byte {
            b'e' => in_exponent = true,
            b'-' if in_exponent => exponent_negative = true,
            b'0'..=b'9' if in_exponent => {
                exponent = exponent * 10 + i32::from(byte - b'0');
            }
            b'0'..=b'9' => digits.push(char::from(byte)),
            // The decimal point of the mantissa.
            _ => {}
        }
    }
    if exponent_negative {
        exponent = -exponent;
    }
    let significant = digits.trim_end_matches('0').len().max(1);
    digits.truncate(significant);
    (digits, exponent)
}

/// Replaces odd `digits` by the even candidate when `n` lies exactly halfway
/// between two shortest round-trip candidates. This is the refinement of
/// ECMA-262 Number::toString recommended in its note ("if there are two such
/// possible values of s, choose the one that is even"), which browsers
/// implement and RFC 8785 Appendix B checks with `1424953923781206.2`.
fn prefer_even_on_tie(n: f64, digits: &mut String, point: i32) {
    let k = digits.len();
    let last_is_odd = digits
        .bytes()
        .next_back()
        .is_some_and(|d| (d - b'0') % 2 == 1);
    if !last_is_odd {
        return;
    }
    // A tie means the exact decimal expansion of `n` is the lower k-digit
    // candidate `floor` followed by a single 5.
    let Some(exact) = short_exact_digits(n) else {
        return;
    };
    if exact.len() != k + 1 {
        return;
    }
    let floor = &exact[..k];
    let other = if floor == digits.as_str() {
        match increment_decimal(floor) {
            Some(ceiling) => ceiling,
            None => return,
        }
    } else {
        floor.to_owned()
    };
    // The other candidate is even (it differs by one); keep it only if it
    // also reads back as `n`.
    let scale = i64::from(point) - k as i64;
    if format!("{other}e{scale}").parse::<f64>() == Ok(n) {
        let significant = other.trim_end_matches('0').len().max(1);
        *digits = other;
        digits.truncate(significant);
    }
}

/// Returns the significant digits of the exact decimal value of a finite,
/// positive `n` when they end in 5 and fit in `u128`; `None` otherwise,
/// which rules out a tie.
///
/// With `n = odd × 2^e` (`odd` odd, below 2^53), the expansion is the
/// integer `odd × 2^e` when `e >= 0`, and `odd × 5^-e` digits after the
/// point otherwise. A final digit 5 needs `5^(e+1)` to divide `odd` in the
/// first case, so `e <= 21`; in the second case a tie needs at most 18
/// digits (k <= 17), so `5^-e < 10^18`, hence `-e <= 25`.
fn short_exact_digits(n: f64) -> Option<String> {
    const FRACTION_BITS: u32 = 52;
    const EXPONENT_BIAS: i32 = 1075;
    const MAX_INTEGER_SHIFT: i32 = 21;
    const MAX_FRACTION_POWER: i32 = 25;

    let bits = n.to_bits();
    let fraction = bits & ((1 << FRACTION_BITS) - 1);
    let biased = i32::try_from((bits >> FRACTION_BITS) & 0x7ff).ok()?;
    let (mantissa, exponent) = if biased == 0 {
        (fraction, 1 - EXPONENT_BIAS)
    } else {
        (fraction | (1 << FRACTION_BITS), biased - EXPONENT_BIAS)
    };
    if mantissa == 0 {
        return None;
    }
    let zeros = mantissa.trailing_zeros();
    let odd = u128::from(mantissa >> zeros);
    let exponent = exponent + i32::try_from(zeros).ok()?;
    let value = if exponent >= 0 {
        if exponent > MAX_INTEGER_SHIFT {
            return None;
        }
        odd << exponent
    } else {
        if -exponent > MAX_FRACTION_POWER {
            return None;
        }
        odd * 5_u128.pow(exponent.unsigned_abs())
    };
    let text = value.to_string();
    let exact = text.trim_end_matches('0');
    exact.ends_with('5').then(|| exact.to_owned())
}

/// Adds one to a string of decimal digits, or returns `None` when the result
/// would need one more digit.
fn increment_decimal(digits: &str) -> Option<String> {
    let mut bytes = digits.as_bytes().to_vec();
    for byte in bytes.iter_mut().rev() {
        if *byte == b'9' {
            *byte = b'0';
        } else {
            *byte += 1;
            return String::from_utf8(bytes).ok();
        }
    }
    None
}

/// Lays out `digits` (ECMA-262 `s`, `k` digits long) with the decimal point
/// at position `point` (ECMA-262 `n`), following the layout steps of
/// ECMA-262 Number::toString.
fn layout_digits(digits: &str, point: i32, out: &mut String) {
    let k = digits.len();
    match usize::try_from(point) {
        // k <= n <= 21: the digits followed by n - k zeros.
        Ok(n) if k <= n && point <= MAX_PLAIN_POSITION => {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', n - k));
        }
        // 0 < n <= 21: the decimal point falls inside the digits.
        Ok(n) if n > 0 && point <= MAX_PLAIN_POSITION => {
            out.push_str(&digits[..n]);
            out.push('.');
            out.push_str(&digits[n..]);
        }
        // -6 < n <= 0: leading zeros after "0.".
        _ if (MIN_PLAIN_POSITION..=0).contains(&point) => {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(digits);
        }
        // Exponent form: d[.ddd]e±x with x = n - 1.
        _ => {
            out.push_str(&digits[..1]);
            if k > 1 {
                out.push('.');
                out.push_str(&digits[1..]);
            }
            out.push('e');
            out.push(if point > 0 { '+' } else { '-' });
            out.push_str(&(point - 1).unsigned_abs().to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canonical(value: &Value) -> String {
        to_canonical_string(value).expect("canonicalizable value")
    }

    fn from_bits(bits: u64) -> Result<String, JcsError> {
        format_number(f64::from_bits(bits))
    }

    #[test]
    fn rfc8785_3_2_2_sample() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let mut value: Value = serde_json::from_str(input).expect("valid sample");
        // Without its `float_roundtrip` feature, serde_json reads
        // 333333333.33333329 one ulp off (as 333333333.33333325), so the
        // numbers are taken from Rust's correctly rounded parser instead.
        value["numbers"] = ["333333333.33333329", "1E30", "4.50", "2e-3", "1e-27"]
            .iter()
            .map(|text| Value::from(text.parse::<f64>().expect("valid number")))
            .collect();
        let expected = concat!(
            r#"{"literals":[null,true,false],"#,
            r#""numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
            r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#,
        );
        assert_eq!(canonical(&value), expected);
        assert_eq!(
            to_canonical_vec(&value).expect("canonicalizable"),
            expected.as_bytes()
        );
    }

    #[test]
    fn rfc8785_3_2_3_sorting() {
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let value: Value = serde_json::from_str(input).expect("valid sample");
        let expected = concat!(
            "{",
            "\"\\r\":\"Carriage Return\",",
            "\"1\":\"One\",",
            "\"\u{80}\":\"Control\",",
            "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",",
            "\"\u{20ac}\":\"Euro Sign\",",
            "\"\u{1f600}\":\"Emoji: Grinning Face\",",
            "\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"",
            "}",
        );
        assert_eq!(canonical(&value), expected);
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let table: &[(u64, &str)] = &[
            (0x0000_0000_0000_0000, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in table {
            assert_eq!(
                from_bits(bits).as_deref(),
                Ok(expected),
                "bits {bits:#018x}"
            );
        }
    }

    #[test]
    fn rfc8785_appendix_b_non_finite() {
        assert_eq!(from_bits(0x7ff0_0000_0000_0001), Err(JcsError::NonFinite));
        assert_eq!(from_bits(0x7ff0_0000_0000_0000), Err(JcsError::NonFinite));
        assert_eq!(from_bits(0xfff0_0000_0000_0000), Err(JcsError::NonFinite));
        assert_eq!(format_number(f64::NAN), Err(JcsError::NonFinite));
    }

    #[test]
    fn layout_boundaries() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.5, "-1.5"),
            (100.0, "100"),
            (123.456, "123.456"),
            (0.1, "0.1"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (-0.0, "0"),
        ];
        for &(n, expected) in cases {
            assert_eq!(format_number(n).as_deref(), Ok(expected), "{n:e}");
        }
    }

    #[test]
    fn integers_go_through_f64() {
        let cases = [
            (json!(0), "0"),
            (json!(-1), "-1"),
            (json!(9_007_199_254_740_993_u64), "9007199254740992"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(i64::MIN), "-9223372036854776000"),
            (json!(-0.0), "0"),
        ];
        for (value, expected) in cases {
            assert_eq!(canonical(&value), expected);
        }
    }

    #[test]
    fn string_escapes() {
        let value = json!("\u{0}\u{1f}\u{7f}/\"\\\u{8}\u{c}\n\r\t é😀");
        assert_eq!(
            canonical(&value),
            "\"\\u0000\\u001f\u{7f}/\\\"\\\\\\b\\f\\n\\r\\t é😀\""
        );
    }

    #[test]
    fn utf16_order_differs_from_utf8_order() {
        // In UTF-8 (and code point) order U+E000 < U+FF61 < U+1F600, but
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16 and sorts first.
        let value = json!({"\u{ff61}": 1, "\u{1f600}": 2, "\u{e000}": 3});
        assert_eq!(
            canonical(&value),
            "{\"\u{1f600}\":2,\"\u{e000}\":3,\"\u{ff61}\":1}"
        );
    }

    #[test]
    fn exact_ties_choose_the_even_digit() {
        // Each value lies exactly halfway between two 17-digit candidates
        // that both round-trip; ECMA-262 picks the even one.
        let two_pow_50 = 2_f64.powi(50);
        let cases: &[(f64, &str)] = &[
            (f64::from_bits(0x4314_3ff3_c1cb_0959), "1424953923781206.2"),
            (two_pow_50 + 0.25, "1125899906842624.2"),
            (two_pow_50 + 0.75, "1125899906842624.8"),
            (-(two_pow_50 + 0.75), "-1125899906842624.8"),
        ];
        for &(n, expected) in cases {
            assert_eq!(format_number(n).as_deref(), Ok(expected));
        }
    }

    #[test]
    fn nested_values_without_whitespace() {
        let value = json!({"b": [1, {"d": null, "c": true}], "a": {}, "": []});
        assert_eq!(
            canonical(&value),
            r#"{"":[],"a":{},"b":[1,{"c":true,"d":null}]}"#
        );
    }

    #[test]
    fn write_canonical_appends() {
        let mut out = b"prefix:".to_vec();
        write_canonical(&json!({"k": "v"}), &mut out).expect("canonicalizable");
        assert_eq!(out, b"prefix:{\"k\":\"v\"}");
    }

    /// Characters weighted towards the cases JCS treats specially.
    fn arb_char() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => prop::char::range('\u{0}', '\u{7f}'),
            1 => prop::char::range('\u{e000}', '\u{ffff}'),
            2 => any::<char>(),
        ]
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop::collection::vec(arb_char(), 0..12).prop_map(String::from_iter)
    }

    /// Numbers that `serde_json`'s default float parser reads back exactly.
    ///
    /// Without its `float_roundtrip` feature, `serde_json` may be one ulp off
    /// on decimals needing more than one rounding (more than 15 significant
    /// digits or a power of ten beyond 10^22), so the `Value` round trip
    /// uses integers within ±2^53 and decimals `m × 10^s` with `|m| < 10^15`
    /// and `-22 <= s <= 3`. The full double range is covered by
    /// `numbers_round_trip_exactly` with Rust's correctly rounded parser.
    fn arb_number() -> impl Strategy<Value = Value> {
        const SAFE_INT: i64 = 1 << 53;
        const MANTISSA: i64 = 999_999_999_999_999;
        prop_oneof![
            (-SAFE_INT..=SAFE_INT).prop_map(Value::from),
            (0..=SAFE_INT as u64).prop_map(Value::from),
            (-MANTISSA..=MANTISSA, -22_i32..=3).prop_map(|(m, s)| {
                let n: f64 = format!("{m}e{s}").parse().expect("valid decimal");
                Value::from(n)
            }),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            arb_number(),
            arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((arb_string(), inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Equality under the JCS data model: numbers compare as doubles, so
    /// `1`, `1.0` and `-0`/`0` are the same number.
    fn jcs_equal(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(xs), Value::Array(ys)) => {
                xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| jcs_equal(x, y))
            }
            (Value::Object(xs), Value::Object(ys)) => {
                xs.len() == ys.len()
                    && xs
                        .iter()
                        .all(|(k, x)| ys.get(k).is_some_and(|y| jcs_equal(x, y)))
            }
            _ => a == b,
        }
    }

    proptest! {
        #[test]
        fn canonical_output_reparses_to_equal_value(value in arb_value()) {
            let first = to_canonical_vec(&value).expect("canonicalizable");
            let reparsed: Value = serde_json::from_slice(&first).expect("valid JSON");
            prop_assert!(jcs_equal(&value, &reparsed), "{value} vs {reparsed}");
            let second = to_canonical_vec(&reparsed).expect("canonicalizable");
            prop_assert_eq!(first, second);
        }

        #[test]
        fn numbers_round_trip_exactly(bits in any::<u64>()) {
            let n = f64::from_bits(bits);
            match format_number(n) {
                Ok(text) => {
                    let back: f64 = text.parse().expect("Rust parses ECMAScript numbers");
                    prop_assert_eq!(back, n, "{}", text);
                    prop_assert!(serde_json::from_str::<Number>(&text).is_ok(), "{}", text);
                    prop_assert_eq!(format_number(back), Ok(text));
                }
                Err(error) => {
                    prop_assert!(!n.is_finite());
                    prop_assert_eq!(error, JcsError::NonFinite);
                }
            }
        }

        #[test]
        fn integers_match_their_double(i in any::<i64>(), u in any::<u64>()) {
            prop_assert_eq!(
                canonical(&Value::from(i)),
                format_number(i as f64).expect("finite")
            );
            prop_assert_eq!(
                canonical(&Value::from(u)),
                format_number(u as f64).expect("finite")
            );
        }
    }
}

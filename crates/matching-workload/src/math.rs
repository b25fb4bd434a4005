//! `ln` and `exp` from IEEE-754 `+ - * /` only, so that a seed gives the same
//! flow on every platform and toolchain: the platform's `f64::ln`/`powf` come
//! from the system maths library, whose last bit may differ between libms.
//!
//! Both are accurate to a few ulp over the ranges the generator uses, which is
//! all a sampler needs; what matters is that they are *the same* everywhere.

use std::f64::consts::{LN_2, SQRT_2};

/// Natural logarithm of a positive, normal, finite `x`.
pub(crate) fn ln(x: f64) -> f64 {
    assert!(x.is_normal() && x > 0.0, "ln of {x}");
    let bits = x.to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa scaled into [1, 2), then into [sqrt(1/2), sqrt(2)).
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > SQRT_2 {
        m *= 0.5;
        exponent += 1;
    }
    // ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716: the odd
    // series converges by a factor s^2 < 0.03 a term, so 14 terms reach
    // far below one ulp.
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    for k in 0..14 {
        sum += term / (2 * k + 1) as f64;
        term *= s2;
    }
    exponent as f64 * LN_2 + 2.0 * sum
}

/// `e^x` for `x` in `[-700, 700]`.
pub(crate) fn exp(x: f64) -> f64 {
    assert!((-700.0..=700.0).contains(&x), "exp of {x}");
    // x = k ln2 + r with |r| <= ln2 / 2; e^r by its Taylor series (the
    // 24th term is below 1e-30), scaled by 2^k through the exponent bits.
    // ln2 is split (Cody and Waite, as in fdlibm) so that k * LN2_HI is
    // exact and r keeps its precision for large |k|.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let k = (x / LN_2).round();
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..24 {
        term *= r / n as f64;
        sum += term;
    }
    sum * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_agrees_with_std() {
        let mut x = 1e-300;
        while x < 1e300 {
            let got = ln(x);
            let want = x.ln();
            assert!((got - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(1.0), "ln({x}) = {got}, std {want}");
            x *= 1.37;
        }
        assert_eq!(ln(1.0), 0.0);
        for u in [f64::EPSILON, 0.1, 0.5, 0.999_999, 1.0 - f64::EPSILON / 2.0] {
            assert!((ln(u) - u.ln()).abs() <= 4.0 * f64::EPSILON * u.ln().abs().max(1e-300) + 1e-300);
        }
    }

    #[test]
    fn exp_agrees_with_std() {
        let mut x = -700.0;
        while x <= 700.0 {
            let got = exp(x);
            let want = x.exp();
            assert!((got - want).abs() <= 4.0 * f64::EPSILON * want, "exp({x}) = {got}, std {want}");
            x += 0.731;
        }
    }
}

//! The tensor that travels on the wire: shape + dtype + little-endian bytes, independent of any
//! deep-learning framework, with conversions to and from `f32` and integer token ids.

use bytes::Bytes;
use half::{bf16, f16};

use crate::error::{Result, WireError};
use crate::proto;

/// The largest rank a tensor on the wire may have.
pub const MAX_RANK: usize = 8;
/// The largest element count of one tensor on the wire (1 Gi elements; the message size limit
/// is usually the tighter bound).
pub const MAX_ELEMENTS: u64 = 1 << 30;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 64-bit integers (token ids).
    I64,
    /// Signed 32-bit integers (token ids).
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// The protocol's enum value.
    pub fn to_proto(self) -> proto::Dtype {
        match self {
            DType::F32 => proto::Dtype::F32,
            DType::F16 => proto::Dtype::F16,
            DType::BF16 => proto::Dtype::Bf16,
            DType::I64 => proto::Dtype::I64,
            DType::I32 => proto::Dtype::I32,
        }
    }

    /// Parses the protocol's raw enum value; `None` for unknown or unspecified values.
    pub fn from_proto(value: i32) -> Option<DType> {
        match proto::Dtype::try_from(value).ok()? {
            proto::Dtype::Unspecified => None,
            proto::Dtype::F32 => Some(DType::F32),
            proto::Dtype::F16 => Some(DType::F16),
            proto::Dtype::Bf16 => Some(DType::BF16),
            proto::Dtype::I64 => Some(DType::I64),
            proto::Dtype::I32 => Some(DType::I32),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
        })
    }
}

/// A dense row-major tensor: shape, dtype and little-endian bytes whose length always matches.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    dtype: DType,
    data: Bytes,
}

fn numel_of(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The little-endian bytes of `values` encoded by `enc` (`N` bytes each), in one pass that
/// vectorises (pushing element by element does not).
fn le_bytes<const N: usize>(values: &[f32], enc: impl Fn(f32) -> [u8; N]) -> Vec<u8> {
    let mut data = vec![0u8; values.len() * N];
    for (c, &v) in data.chunks_exact_mut(N).zip(values) {
        c.copy_from_slice(&enc(v));
    }
    data
}

impl Tensor {
    /// A tensor from raw little-endian bytes; fails when the length does not match the shape.
    pub fn new(shape: Vec<usize>, dtype: DType, data: impl Into<Bytes>) -> Result<Tensor> {
        let data = data.into();
        let expected = numel_of(&shape)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| WireError::TooManyElements {
                what: "tensor".into(),
                shape: shape.iter().map(|&d| d as u64).collect(),
                max: MAX_ELEMENTS,
            })?;
        if expected != data.len() {
            return Err(WireError::ByteLength {
                what: "tensor".into(),
                shape,
                dtype,
                expected,
                got: data.len(),
            });
        }
        Ok(Tensor { shape, dtype, data })
    }

    /// An `f32` tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Result<Tensor> {
        Tensor::new(shape, DType::F32, le_bytes(values, |v| v.to_le_bytes()))
    }

    /// An `i64` tensor (token ids).
    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Result<Tensor> {
        let mut data = Vec::with_capacity(values.len() * 8);
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        Tensor::new(shape, DType::I64, data)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The little-endian bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        // The constructor checked that the product fits.
        self.data.len() / self.dtype.size()
    }

    /// The values as `f32` (exact for f16 and bf16); fails for integer tensors.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let d = &self.data[..];
        Ok(match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::I64 | DType::I32 => {
                return Err(WireError::Conversion {
                    from: self.dtype,
                    to: "f32",
                });
            }
        })
    }

    /// The values as `i64` token ids; fails for float tensors.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        let d = &self.data[..];
        Ok(match self.dtype {
            DType::I64 => d
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            _ => {
                return Err(WireError::Conversion {
                    from: self.dtype,
                    to: "i64",
                });
            }
        })
    }

    /// Converts a float tensor to another float dtype (f32 <-> f16 <-> bf16, rounding to
    /// nearest); an integer tensor is returned unchanged when `dtype` is its own.
    pub fn cast(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        if !self.dtype.is_float() || !dtype.is_float() {
            return Err(WireError::Conversion {
                from: self.dtype,
                to: match dtype {
                    DType::I64 => "i64",
                    DType::I32 => "i32",
                    _ => "a float dtype",
                },
            });
        }
        let values = self.to_f32()?;
        let data = match dtype {
            DType::F32 => le_bytes(&values, |v| v.to_le_bytes()),
            DType::F16 => le_bytes(&values, |v| f16::from_f32(v).to_le_bytes()),
            DType::BF16 => le_bytes(&values, |v| bf16::from_f32(v).to_le_bytes()),
            // Refused above: both dtypes are floats here.
            DType::I64 | DType::I32 => Vec::new(),
        };
        Tensor::new(self.shape.clone(), dtype, data)
    }

    /// This float tensor multiplied by `k`, as f32.
    pub fn scaled(&self, k: f32) -> Result<Tensor> {
        let values: Vec<f32> = self.to_f32()?.into_iter().map(|v| v * k).collect();
        Tensor::from_f32(self.shape.clone(), &values)
    }

    /// The first non-finite value of a float tensor, as `(index, value)`.
    pub fn first_non_finite(&self) -> Option<(usize, f32)> {
        let d = &self.data[..];
        // A branch-free pass first (it vectorises); the search only when it finds something.
        let all_finite = match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) & 0x7F80_0000)
                .fold(true, |ok, e| ok & (e != 0x7F80_0000)),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7C00)
                .fold(true, |ok, e| ok & (e != 0x7C00)),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7F80)
                .fold(true, |ok, e| ok & (e != 0x7F80)),
            DType::I64 | DType::I32 => true,
        };
        if all_finite {
            return None;
        }
        match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .enumerate()
                .find(|(_, v)| !v.is_finite()),
            DType::F16 => d
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .map(|(i, v)| (i, v.to_f32())),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]))
                .enumerate()
                .find(|(_, v)| !v.is_finite())
                .map(|(i, v)| (i, v.to_f32())),
            DType::I64 | DType::I32 => None,
        }
    }

    /// Decodes and validates a tensor received from the network; `what` names it in errors.
    pub fn from_proto(p: proto::Tensor, what: &str) -> Result<Tensor> {
        let dtype = DType::from_proto(p.dtype).ok_or_else(|| WireError::UnknownDType {
            what: what.to_string(),
            value: p.dtype,
        })?;
        if p.shape.len() > MAX_RANK {
            return Err(WireError::RankTooLarge {
                what: what.to_string(),
                rank: p.shape.len(),
                max: MAX_RANK,
            });
        }
        let too_many = || WireError::TooManyElements {
            what: what.to_string(),
            shape: p.shape.clone(),
            max: MAX_ELEMENTS,
        };
        let numel = p
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(too_many)?;
        let shape: Vec<usize> = p
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| too_many())?;
        let expected = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(too_many)?;
        if expected != p.data.len() {
            return Err(WireError::ByteLength {
                what: what.to_string(),
                shape,
                dtype,
                expected,
                got: p.data.len(),
            });
        }
        Ok(Tensor {
            shape,
            dtype,
            data: p.data,
        })
    }

    /// The protocol message of this tensor.
    pub fn to_proto(&self) -> proto::Tensor {
        proto::Tensor {
            shape: self.shape.iter().map(|&d| d as u64).collect(),
            dtype: self.dtype.to_proto() as i32,
            data: self.data.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn byte_length_is_checked() {
        let err = Tensor::new(vec![2, 3], DType::F32, vec![0u8; 23]).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::ByteLength {
                    expected: 24,
                    got: 23,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn overflowing_shape_is_refused() {
        let p = proto::Tensor {
            shape: vec![u64::MAX, 2],
            dtype: proto::Dtype::F32 as i32,
            data: Bytes::new(),
        };
        let err = Tensor::from_proto(p, "inputs[0]").unwrap_err();
        assert!(matches!(err, WireError::TooManyElements { .. }), "{err}");
    }

    #[test]
    fn unknown_dtype_and_rank_are_refused() {
        let p = proto::Tensor {
            shape: vec![1],
            dtype: 99,
            data: Bytes::from(vec![0u8; 4]),
        };
        assert!(matches!(
            Tensor::from_proto(p, "x").unwrap_err(),
            WireError::UnknownDType { value: 99, .. }
        ));
        let p = proto::Tensor {
            shape: vec![1; 9],
            dtype: proto::Dtype::F32 as i32,
            data: Bytes::from(vec![0u8; 4]),
        };
        assert!(matches!(
            Tensor::from_proto(p, "x").unwrap_err(),
            WireError::RankTooLarge { rank: 9, .. }
        ));
    }

    #[test]
    fn non_finite_is_found() {
        let t = Tensor::from_f32(vec![3], &[1.0, f32::NAN, 2.0]).unwrap();
        assert_eq!(t.first_non_finite().map(|(i, _)| i), Some(1));
        let b = Tensor::from_f32(vec![2], &[1.0, f32::INFINITY])
            .unwrap()
            .cast(DType::BF16)
            .unwrap();
        assert_eq!(b.first_non_finite().map(|(i, _)| i), Some(1));
        let h = Tensor::from_f32(vec![3], &[1.0, 2.0, f32::NEG_INFINITY])
            .unwrap()
            .cast(DType::F16)
            .unwrap();
        assert_eq!(h.first_non_finite().map(|(i, _)| i), Some(2));
        // The largest finite values and subnormals are finite in every dtype.
        let edge = Tensor::from_f32(vec![4], &[f32::MAX, f32::MIN, 1e-40, -0.0]).unwrap();
        assert_eq!(edge.first_non_finite(), None);
        let edge = Tensor::from_f32(vec![3], &[65504.0, -65504.0, 1e-7]).unwrap();
        for dtype in [DType::F16, DType::BF16] {
            assert_eq!(
                edge.cast(dtype).unwrap().first_non_finite(),
                None,
                "{dtype}"
            );
        }
    }

    proptest! {
        #[test]
        fn f32_round_trips_through_proto(values in proptest::collection::vec(-1e6f32..1e6, 0..64)) {
            let t = Tensor::from_f32(vec![values.len()], &values).unwrap();
            let back = Tensor::from_proto(t.to_proto(), "t").unwrap();
            prop_assert_eq!(back.to_f32().unwrap(), values);
        }

        #[test]
        fn half_casts_are_close(values in proptest::collection::vec(-100f32..100.0, 1..64)) {
            let t = Tensor::from_f32(vec![values.len()], &values).unwrap();
            for dt in [DType::F16, DType::BF16] {
                let c = t.cast(dt).unwrap();
                prop_assert_eq!(c.data().len(), values.len() * 2);
                let back = c.cast(DType::F32).unwrap().to_f32().unwrap();
                for (a, b) in values.iter().zip(&back) {
                    prop_assert!((a - b).abs() <= a.abs() * 1e-2 + 1e-3);
                }
            }
        }

        #[test]
        fn token_ids_round_trip(values in proptest::collection::vec(any::<i64>(), 0..32)) {
            let t = Tensor::from_i64(vec![values.len()], &values).unwrap();
            prop_assert_eq!(Tensor::from_proto(t.to_proto(), "t").unwrap().to_i64().unwrap(), values);
        }
    }
}

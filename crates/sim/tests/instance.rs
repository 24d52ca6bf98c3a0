//! Instance files: round trips, files made by NumPy, and one test per rejection.

#![allow(clippy::unwrap_used)]

use bt_mechanism::simplex::on_simplex;
use bt_sim::Error;
use bt_sim::instance::Instance;
use safetensors::{Dtype, tensor::TensorView};

fn bytes_f64(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Serialises arbitrary tensors `(name, dtype, shape, bytes)`.
fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dt, shape, data)| (*name, TensorView::new(*dt, shape.clone(), data).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A valid n = 3 instance's parts: stake, w0, hessians (identity-like PSD).
fn parts() -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = 3;
    let stake = vec![1.0, 2.0, 0.5];
    let w0 = vec![0.2, 0.3, 0.5, 1.0, 0.0, 0.0, 0.25, 0.25, 0.5];
    let mut hs = vec![0.0; n * n * n];
    for i in 0..n {
        for j in 0..n {
            hs[i * 9 + j * 3 + j] = (1 + i + j) as f64;
        }
        hs[i * 9 + 1] = 0.5;
        hs[i * 9 + 3] = 0.5;
    }
    (stake, w0, hs)
}

fn valid_file_with(stake: &[f64], w0: &[f64], hs: &[f64]) -> Vec<u8> {
    file(&[
        ("stake", Dtype::F64, vec![3], bytes_f64(stake)),
        ("w0", Dtype::F64, vec![3, 3], bytes_f64(w0)),
        ("hessians", Dtype::F64, vec![3, 3, 3], bytes_f64(hs)),
    ])
}

fn load_err(bytes: &[u8]) -> String {
    Instance::from_safetensors(bytes).unwrap_err().to_string()
}

#[test]
fn valid_file_loads() {
    let (s, w, h) = parts();
    let inst = Instance::from_safetensors(&valid_file_with(&s, &w, &h)).unwrap();
    assert_eq!(inst.n(), 3);
    assert_eq!(inst.stake, s);
    assert_eq!(inst.hessians.get(2, 1, 1), 4.0);
    assert_eq!(inst.hessians.get(0, 1, 0), 0.5);
}

#[test]
fn random_instances_follow_the_spec_and_round_trip() {
    let inst = Instance::random(12, 3).unwrap();
    assert_eq!(
        inst,
        Instance::random(12, 3).unwrap(),
        "same seed, same instance"
    );
    assert_ne!(inst, Instance::random(12, 4).unwrap());
    for i in 0..12 {
        assert!(on_simplex(inst.w0.row(i), 1e-12));
        let trace: f64 = (0..12).map(|j| inst.hessians.get(i, j, j)).sum();
        assert!((trace - 1.0).abs() < 1e-12, "trace {trace}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.safetensors");
    inst.save(&path).unwrap();
    assert_eq!(Instance::load(&path).unwrap(), inst);
}

#[test]
fn file_made_by_numpy_and_python_safetensors_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/numpy_instance.safetensors");
    let inst = Instance::load(&path).unwrap();
    assert_eq!(inst.n(), 5);
    assert!(inst.stake.iter().all(|&s| s == 1.0));
}

#[test]
fn f32_tensors_are_widened() {
    let (s, w, h) = parts();
    let f32s = |xs: &[f64]| {
        xs.iter()
            .flat_map(|&x| (x as f32).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let bytes = file(&[
        ("stake", Dtype::F32, vec![3], f32s(&s)),
        ("w0", Dtype::F32, vec![3, 3], f32s(&w)),
        ("hessians", Dtype::F32, vec![3, 3, 3], f32s(&h)),
    ]);
    assert_eq!(Instance::from_safetensors(&bytes).unwrap().n(), 3);
}

#[test]
fn rejects_garbage_bytes() {
    assert!(matches!(
        Instance::from_safetensors(b"not a safetensors file"),
        Err(Error::Format(_))
    ));
}

#[test]
fn rejects_missing_file_with_its_path() {
    let err = Instance::load(std::path::Path::new("/nonexistent/x.safetensors")).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/x.safetensors"),
        "{err}"
    );
}

#[test]
fn rejects_each_missing_tensor_by_name() {
    let (s, w, h) = parts();
    let all = [
        ("stake", Dtype::F64, vec![3], bytes_f64(&s)),
        ("w0", Dtype::F64, vec![3, 3], bytes_f64(&w)),
        ("hessians", Dtype::F64, vec![3, 3, 3], bytes_f64(&h)),
    ];
    for skip in 0..3 {
        let some: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, t)| t.clone())
            .collect();
        let err = Instance::from_safetensors(&file(&some)).unwrap_err();
        assert!(
            matches!(err, Error::MissingTensor { name } if name == all[skip].0),
            "{err}"
        );
    }
}

#[test]
fn rejects_wrong_shapes() {
    let (s, w, h) = parts();
    let bad_w0 = file(&[
        ("stake", Dtype::F64, vec![3], bytes_f64(&s)),
        ("w0", Dtype::F64, vec![9], bytes_f64(&w)),
        ("hessians", Dtype::F64, vec![3, 3, 3], bytes_f64(&h)),
    ]);
    assert!(load_err(&bad_w0).contains("tensor `w0` has shape [9], expected [3, 3]"));
    let bad_h = file(&[
        ("stake", Dtype::F64, vec![3], bytes_f64(&s)),
        ("w0", Dtype::F64, vec![3, 3], bytes_f64(&w)),
        ("hessians", Dtype::F64, vec![3, 9], bytes_f64(&h)),
    ]);
    assert!(load_err(&bad_h).contains("tensor `hessians` has shape [3, 9], expected [3, 3, 3]"));
    let bad_stake = file(&[
        ("stake", Dtype::F64, vec![3, 1], bytes_f64(&s)),
        ("w0", Dtype::F64, vec![3, 3], bytes_f64(&w)),
        ("hessians", Dtype::F64, vec![3, 3, 3], bytes_f64(&h)),
    ]);
    assert!(load_err(&bad_stake).contains("tensor `stake` has shape [3, 1]"));
}

#[test]
fn rejects_wrong_dtype() {
    let (_, w, h) = parts();
    let bytes = file(&[
        ("stake", Dtype::I64, vec![3], vec![0; 24]),
        ("w0", Dtype::F64, vec![3, 3], bytes_f64(&w)),
        ("hessians", Dtype::F64, vec![3, 3, 3], bytes_f64(&h)),
    ]);
    assert!(load_err(&bytes).contains("tensor `stake` has dtype I64"));
}

#[test]
fn rejects_nan_in_each_tensor() {
    let (s, w, h) = parts();
    let mut s2 = s.clone();
    s2[1] = f64::NAN;
    assert!(load_err(&valid_file_with(&s2, &w, &h)).contains("tensor `stake`: entry 1"));
    let mut w2 = w.clone();
    w2[4] = f64::INFINITY;
    assert!(load_err(&valid_file_with(&s, &w2, &h)).contains("tensor `w0`: entry 4"));
    let mut h2 = h.clone();
    h2[13] = f64::NAN;
    assert!(load_err(&valid_file_with(&s, &w, &h2)).contains("tensor `hessians`: entry 13"));
}

#[test]
fn rejects_negative_stake() {
    let (mut s, w, h) = parts();
    s[2] = -1.0;
    assert!(load_err(&valid_file_with(&s, &w, &h)).contains("tensor `stake`: entry 2 is negative"));
}

#[test]
fn rejects_rows_off_the_simplex() {
    let (s, mut w, h) = parts();
    w[3] = 0.9; // row 1 sums to 0.9
    assert!(
        load_err(&valid_file_with(&s, &w, &h)).contains("row 1 is not on the simplex: it sums to")
    );
    let (s, mut w, h) = parts();
    w[6] = -0.25;
    w[8] = 1.0; // row 2 sums to 1 but has a negative entry
    assert!(
        load_err(&valid_file_with(&s, &w, &h))
            .contains("row 2 is not on the simplex: entry 0 is negative")
    );
}

#[test]
fn rejects_non_symmetric_hessian() {
    let (s, w, mut h) = parts();
    h[9 + 2] = 0.7; // hessians[1][0][2] without its mirror
    let err = load_err(&valid_file_with(&s, &w, &h));
    assert!(
        err.contains("hessians[1] is not symmetric: [0,2] = 0.7 but [2,0] = 0"),
        "{err}"
    );
}

#[test]
fn rejects_hessian_that_is_not_psd() {
    let (s, w, mut h) = parts();
    // hessians[2] = [[3, 5, 0], [5, 4, 0], [0, 0, 5]] has a negative eigenvalue.
    h[18 + 1] = 5.0;
    h[18 + 3] = 5.0;
    let err = load_err(&valid_file_with(&s, &w, &h));
    assert!(
        err.contains("hessians[2] is not positive semi-definite"),
        "{err}"
    );
}

#[test]
fn rejects_too_few_learners() {
    let bytes = file(&[
        ("stake", Dtype::F64, vec![1], bytes_f64(&[1.0])),
        ("w0", Dtype::F64, vec![1, 1], bytes_f64(&[1.0])),
        ("hessians", Dtype::F64, vec![1, 1, 1], bytes_f64(&[1.0])),
    ]);
    assert!(load_err(&bytes).contains("need at least 2 learners"));
    assert!(Instance::random(1, 0).is_err());
}

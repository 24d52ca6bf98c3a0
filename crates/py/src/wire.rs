//! `Dendrite` and `Axon` for Python: bt-wire's client and server with NumPy arrays.
//!
//! Every check stays in Rust: signatures, nonces, tensor validation against the declared
//! specs, the stake-ordered queue and the competitive mask. A Python model only sees requests
//! that passed them, and its exceptions become `internal` answers, never a crash.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_chain::{Client, Failover};
use bt_keys::PublicKey;
use bt_neuron::ledger::{LedgerView, Snapshot};
use bt_wire::{
    Axon as RustAxon, AxonConfig, AxonHandle, DType, Dendrite as RustDendrite, DendriteConfig, Dim,
    Kind, MemoryStakes, Peer, Quorum, Reply as RustReply, StakeView, Synapse, SynapseError,
    SynapseResult, Tensor, TensorSpec,
};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple, PyType};

use crate::{BtError, Keypair, Ledger, block_on, ledger_error, public_key, runtime, seconds};

fn wire_error(e: bt_wire::WireError) -> PyErr {
    BtError::new_err(e.to_string())
}

/// One NumPy array, torch tensor (detached and moved to the CPU, then shared with NumPy
/// without a copy) or anything else `numpy.asarray` takes, as a wire tensor: float32 and
/// float64 become f32, int64 and int32 stay integer ids. One copy, into the request.
fn to_tensor(x: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    if x.downcast::<numpy::PyUntypedArray>().is_err() {
        let py = x.py();
        let mut x = x.clone();
        for method in ["detach", "cpu"] {
            if x.hasattr(method)? {
                x = x.call_method0(method)?;
            }
        }
        let array = py.import("numpy")?.call_method1("asarray", (x,))?;
        return to_array_tensor(&array, what);
    }
    to_array_tensor(x, what)
}

/// The values of `a` in row-major order: its own buffer when it is contiguous, else a copy.
fn values<'a, T: numpy::Element + Copy>(a: &'a PyReadonlyArrayDyn<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(a.as_array().iter().copied().collect()),
    }
}

fn to_array_tensor(x: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    let bad = |e: bt_wire::WireError| PyValueError::new_err(format!("{what}: {e}"));
    if let Ok(a) = x.downcast::<PyArrayDyn<f32>>() {
        let a = a.readonly();
        return Tensor::from_f32(a.shape().to_vec(), &values(&a)).map_err(bad);
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<f64>>() {
        let a = a.readonly();
        let v: Vec<f32> = a.as_array().iter().map(|&v| v as f32).collect();
        return Tensor::from_f32(a.shape().to_vec(), &v).map_err(bad);
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<i64>>() {
        let a = a.readonly();
        return Tensor::from_i64(a.shape().to_vec(), &values(&a)).map_err(bad);
    }
    if let Ok(a) = x.downcast::<PyArrayDyn<i32>>() {
        let a = a.readonly();
        let bytes: Vec<u8> = a.as_array().iter().flat_map(|v| v.to_le_bytes()).collect();
        return Tensor::new(a.shape().to_vec(), DType::I32, bytes).map_err(bad);
    }
    let kind = x
        .getattr("dtype")
        .map(|d| d.to_string())
        .unwrap_or_else(|_| x.get_type().to_string());
    Err(PyTypeError::new_err(format!(
        "{what}: expected a NumPy array of float32, float64, int64 or int32, got {kind}"
    )))
}

/// A list of arrays (or one array) as tensors.
fn to_tensors(xs: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<Tensor>> {
    if xs.downcast::<PyList>().is_ok() || xs.downcast::<PyTuple>().is_ok() {
        xs.try_iter()?
            .enumerate()
            .map(|(i, x)| to_tensor(&x?, &format!("{what}[{i}]")))
            .collect()
    } else {
        Ok(vec![to_tensor(xs, &format!("{what}[0]"))?])
    }
}

/// A wire tensor as a NumPy array: floats as float32, ids as int64 or int32 (no copy beyond
/// the decoding).
fn to_array<'py>(py: Python<'py>, t: &Tensor) -> PyResult<Bound<'py, PyAny>> {
    let shape = IxDyn(t.shape());
    let err = |e: bt_wire::WireError| PyValueError::new_err(e.to_string());
    let shaped = |e: numpy::ndarray::ShapeError| PyValueError::new_err(e.to_string());
    Ok(match t.dtype() {
        DType::I64 => ArrayD::from_shape_vec(shape, t.to_i64().map_err(err)?)
            .map_err(shaped)?
            .into_pyarray(py)
            .into_any(),
        DType::I32 => {
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            ArrayD::from_shape_vec(shape, v)
                .map_err(shaped)?
                .into_pyarray(py)
                .into_any()
        }
        _ => ArrayD::from_shape_vec(shape, t.to_f32().map_err(err)?)
            .map_err(shaped)?
            .into_pyarray(py)
            .into_any(),
    })
}

fn float_dtype(name: &str) -> PyResult<DType> {
    match name {
        "f32" | "float32" => Ok(DType::F32),
        "f16" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        other => Err(PyValueError::new_err(format!(
            "dtype {other:?} is not one of f32, f16, bf16"
        ))),
    }
}

/// Runs `fut` as a task of the runtime and waits for it with the GIL released. A call runs
/// next to the connection's own task, on the runtime's threads, and only its answer crosses
/// to the caller's thread (driving it from the caller's thread crossed twice per call).
fn on_runtime<F>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime()?;
    let task = rt.spawn(fut);
    py.detach(|| rt.block_on(task))
        .map_err(|e| BtError::new_err(format!("the call's task failed: {e}")))
}

/// A peer's axon: its hotkey (SS58) and its address (`ip:port` as the metagraph lists it, or
/// `http://ip:port`).
fn peer(hotkey: &str, endpoint: &str) -> PyResult<Peer> {
    let hotkey = public_key(hotkey)?;
    let endpoint = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let host = endpoint.split_once("://").map(|(_, h)| h).unwrap_or("");
    if host
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(PyValueError::new_err(format!(
            "endpoint {endpoint:?} is not host:port"
        )));
    }
    Ok(Peer { hotkey, endpoint })
}

/// One answer of an axon, or the dendrite's own verdict when none came.
#[pyclass(module = "bittensor_rs", frozen)]
pub(crate) struct Reply {
    inner: RustReply,
}

#[pymethods]
impl Reply {
    /// The return code, a `bittensor_rs.ReturnCode`.
    #[getter]
    fn code<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        static RETURN_CODE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
        RETURN_CODE
            .import(py, "bittensor_rs", "ReturnCode")?
            .call1((self.inner.code as i32,))
    }

    /// Whether the axon answered with success.
    #[getter]
    fn ok(&self) -> bool {
        self.inner.is_success()
    }

    /// What went wrong (empty on success).
    #[getter]
    fn message(&self) -> String {
        self.inner.message.clone()
    }

    /// Seconds from sending to the answer.
    #[getter]
    fn elapsed(&self) -> f64 {
        self.inner.elapsed.as_secs_f64()
    }

    /// Forward: the outputs; Backward: the input gradients (possibly none). NumPy arrays.
    #[getter]
    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        self.inner.outputs.iter().map(|t| to_array(py, t)).collect()
    }

    fn __repr__(&self) -> String {
        let shapes: Vec<_> = self
            .inner
            .outputs
            .iter()
            .map(|t| t.shape().to_vec())
            .collect();
        format!(
            "Reply(code={}, message={:?}, outputs={shapes:?}, elapsed={:.4})",
            self.inner.code.as_str_name(),
            self.inner.message,
            self.inner.elapsed.as_secs_f64()
        )
    }
}

/// A client of axons that signs every request with its hotkey; one pooled HTTP/2 connection
/// per peer, k-of-n queries, backoff from failing peers.
#[pyclass(module = "bittensor_rs", frozen)]
pub(crate) struct Dendrite {
    inner: RustDendrite,
}

#[pymethods]
impl Dendrite {
    /// `timeout` (seconds) bounds each request; float tensors travel as `wire_dtype` and come
    /// back as `response_dtype` (`f32`, `f16` or `bf16`).
    #[new]
    #[pyo3(signature = (keypair, timeout = 12.0, wire_dtype = "f32", response_dtype = "f32"))]
    fn new(
        keypair: &Keypair,
        timeout: f64,
        wire_dtype: &str,
        response_dtype: &str,
    ) -> PyResult<Dendrite> {
        let timeout = seconds(timeout)?;
        if timeout.is_zero() {
            return Err(PyValueError::new_err("timeout must be above 0 s"));
        }
        let config = DendriteConfig {
            timeout,
            wire_dtype: float_dtype(wire_dtype)?,
            response_dtype: float_dtype(response_dtype)?,
            ..DendriteConfig::default()
        };
        Ok(Dendrite {
            inner: RustDendrite::new(keypair.inner.clone(), config).map_err(wire_error)?,
        })
    }

    /// This dendrite's hotkey (SS58).
    #[getter]
    fn hotkey(&self) -> String {
        self.inner.hotkey().to_string()
    }

    /// Forward to the axon of `hotkey` at `endpoint`: `inputs` is an array or a list of them.
    fn forward(
        &self,
        py: Python<'_>,
        hotkey: &str,
        endpoint: &str,
        inputs: &Bound<'_, PyAny>,
    ) -> PyResult<Reply> {
        let peer = peer(hotkey, endpoint)?;
        let inputs = to_tensors(inputs, "inputs")?;
        let d = self.inner.clone();
        let inner = on_runtime(py, async move { d.forward(&peer, &inputs).await })?;
        Ok(Reply { inner })
    }

    /// Backward: the inputs sent to Forward and the gradient of the caller's loss with
    /// respect to each of its outputs.
    fn backward(
        &self,
        py: Python<'_>,
        hotkey: &str,
        endpoint: &str,
        inputs: &Bound<'_, PyAny>,
        grad_outputs: &Bound<'_, PyAny>,
    ) -> PyResult<Reply> {
        let peer = peer(hotkey, endpoint)?;
        let inputs = to_tensors(inputs, "inputs")?;
        let grads = to_tensors(grad_outputs, "grad_outputs")?;
        let d = self.inner.clone();
        let inner = on_runtime(py, async move { d.backward(&peer, &inputs, &grads).await })?;
        Ok(Reply { inner })
    }

    /// Forward to every peer (`(hotkey, endpoint)` pairs) at once; returns when `k` have
    /// answered with success and `grace` seconds more have passed (default: when all have
    /// answered or timed out). One reply per peer, in order.
    #[pyo3(signature = (peers, inputs, k = None, grace = 0.0))]
    fn forward_many(
        &self,
        py: Python<'_>,
        peers: Vec<(String, String)>,
        inputs: &Bound<'_, PyAny>,
        k: Option<usize>,
        grace: f64,
    ) -> PyResult<Vec<Reply>> {
        let peers = peers
            .iter()
            .map(|(h, e)| peer(h, e))
            .collect::<PyResult<Vec<_>>>()?;
        let inputs = to_tensors(inputs, "inputs")?;
        let quorum = Quorum {
            k_min: k.unwrap_or(peers.len()),
            grace: seconds(grace)?,
        };
        let d = self.inner.clone();
        let replies = on_runtime(
            py,
            async move { d.forward_many(&peers, &inputs, quorum).await },
        )?;
        Ok(replies.into_iter().map(|inner| Reply { inner }).collect())
    }

    fn __repr__(&self) -> String {
        format!("Dendrite(hotkey={})", self.inner.hotkey())
    }
}

/// One declared tensor: `("float", ["batch", 8])` or `("int", ["batch", "*"])`; a dimension
/// is `"batch"`, `"*"` (any size) or a size.
fn spec(x: &Bound<'_, PyAny>, what: &str) -> PyResult<TensorSpec> {
    let (kind, dims): (String, Vec<Bound<'_, PyAny>>) = x.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected (kind, dims) such as (\"float\", [\"batch\", 8])"
        ))
    })?;
    let kind = match kind.as_str() {
        "float" => Kind::Float,
        "int" => Kind::Int,
        other => {
            return Err(PyValueError::new_err(format!(
                "{what}: kind {other:?} is not \"float\" or \"int\""
            )));
        }
    };
    let dims = dims
        .iter()
        .map(|d| {
            if let Ok(n) = d.extract::<usize>() {
                return Ok(Dim::Fixed(n));
            }
            match d.extract::<String>().as_deref() {
                Ok("batch") => Ok(Dim::Batch),
                Ok("*") => Ok(Dim::Any),
                _ => Err(PyValueError::new_err(format!(
                    "{what}: dimension {d} is not \"batch\", \"*\" or a size"
                ))),
            }
        })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(TensorSpec { kind, dims })
}

/// A model written in Python, served by a Rust axon.
struct PyModel {
    forward: Py<PyAny>,
    backward: Option<Py<PyAny>>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    batchable: bool,
}

/// A Python exception as the model error an axon answers `internal` with.
fn model_error(py: Python<'_>, e: PyErr) -> SynapseError {
    let kind = e
        .get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into());
    let msg = e.value(py).to_string();
    format!("{kind}: {msg}").into()
}

impl PyModel {
    fn call(
        &self,
        f: &Py<PyAny>,
        caller: Option<&PublicKey>,
        inputs: &[Tensor],
        grads: Option<&[Tensor]>,
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        Python::attach(|py| {
            let run = || -> PyResult<Option<Vec<Tensor>>> {
                let arrays = |ts: &[Tensor]| -> PyResult<Bound<'_, PyList>> {
                    let list: Vec<_> = ts
                        .iter()
                        .map(|t| to_array(py, t))
                        .collect::<PyResult<_>>()?;
                    PyList::new(py, list)
                };
                let caller = caller.map(|c| c.to_string());
                let out = match grads {
                    None => f.call1(py, (caller, arrays(inputs)?))?,
                    Some(g) => f.call1(py, (caller, arrays(inputs)?, arrays(g)?))?,
                };
                let out = out.bind(py);
                if out.is_none() {
                    return Ok(None);
                }
                Ok(Some(to_tensors(out, "returned")?))
            };
            run().map_err(|e| model_error(py, e))
        })
    }

    /// Forward for `caller` (None when requests were fused).
    fn run_forward(
        &self,
        caller: Option<&PublicKey>,
        inputs: &[Tensor],
    ) -> SynapseResult<Vec<Tensor>> {
        self.call(&self.forward, caller, inputs, None)?
            .ok_or_else(|| "forward returned None".into())
    }

    /// Backward for `caller`: acknowledged and ignored without a `backward` callable.
    fn run_backward(
        &self,
        caller: Option<&PublicKey>,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        match &self.backward {
            Some(b) => self.call(b, caller, inputs, Some(grad_outputs)),
            None => Ok(None),
        }
    }
}

impl Synapse for PyModel {
    fn input_spec(&self) -> Vec<TensorSpec> {
        self.inputs.clone()
    }

    fn output_spec(&self) -> Vec<TensorSpec> {
        self.outputs.clone()
    }

    fn forward(&self, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        self.run_forward(None, inputs)
    }

    fn forward_from(&self, caller: &PublicKey, inputs: &[Tensor]) -> SynapseResult<Vec<Tensor>> {
        self.run_forward(Some(caller), inputs)
    }

    fn backward(
        &self,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        self.run_backward(None, inputs, grad_outputs)
    }

    fn backward_from(
        &self,
        caller: &PublicKey,
        inputs: &[Tensor],
        grad_outputs: &[Tensor],
    ) -> SynapseResult<Option<Vec<Tensor>>> {
        self.run_backward(Some(caller), inputs, grad_outputs)
    }

    fn batchable(&self) -> bool {
        self.batchable
    }

    fn batchable_backward(&self) -> bool {
        self.batchable
    }
}

/// Where an axon's stakes (its queue order) and masks come from.
enum Stakes {
    /// Set by hand (`Axon.set_stake`); no mask.
    Memory(Arc<MemoryStakes>),
    /// The ledger's metagraph, refreshed in the background and by `Axon.refresh` over one
    /// connection.
    Ledger {
        view: Arc<LedgerView>,
        link: Arc<tokio::sync::Mutex<Failover>>,
        refresh: Duration,
    },
}

impl Stakes {
    /// The view the Rust axon reads.
    fn view(&self) -> Arc<dyn StakeView> {
        match self {
            Stakes::Memory(m) => m.clone(),
            Stakes::Ledger { view, .. } => view.clone(),
        }
    }
}

/// Reads the metagraph and installs it in `view`; its height.
async fn refresh_view(
    link: &tokio::sync::Mutex<Failover>,
    view: &LedgerView,
) -> bt_chain::Result<u64> {
    let mg = link
        .lock()
        .await
        .call(async |c: &mut Client| c.metagraph(None, true).await)
        .await?;
    view.update(Snapshot::from_metagraph(&mg));
    Ok(mg.height)
}

/// Serves a Python model: `forward(caller, inputs) -> outputs` and optionally
/// `backward(caller, inputs, grad_outputs) -> input_grads | None`.
#[pyclass(module = "bittensor_rs")]
pub(crate) struct Axon {
    axon: RustAxon,
    stakes: Stakes,
    handle: Option<AxonHandle>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

#[pymethods]
impl Axon {
    #[new]
    #[pyo3(signature = (
        keypair, forward, inputs, outputs, backward = None, *, ledger = None, mask = true,
        temperature = None, refresh = 12.0, workers = 1, queue_capacity = 256,
        batchable = false, max_request_bytes = 64 << 20, default_timeout = 12.0,
        max_timeout = 60.0, nonce_window = 60.0
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        keypair: &Keypair,
        forward: Py<PyAny>,
        inputs: Vec<Bound<'_, PyAny>>,
        outputs: Vec<Bound<'_, PyAny>>,
        backward: Option<Py<PyAny>>,
        ledger: Option<&Ledger>,
        mask: bool,
        temperature: Option<f64>,
        refresh: f64,
        workers: usize,
        queue_capacity: usize,
        batchable: bool,
        max_request_bytes: usize,
        default_timeout: f64,
        max_timeout: f64,
        nonce_window: f64,
    ) -> PyResult<Axon> {
        if !forward.bind(py).is_callable() {
            return Err(PyTypeError::new_err("forward must be callable"));
        }
        if let Some(b) = &backward
            && !b.bind(py).is_callable()
        {
            return Err(PyTypeError::new_err("backward must be callable or None"));
        }
        let specs = |list: &[Bound<'_, PyAny>], what: &str| -> PyResult<Vec<TensorSpec>> {
            list.iter()
                .enumerate()
                .map(|(i, s)| spec(s, &format!("{what}[{i}]")))
                .collect()
        };
        let model = PyModel {
            forward,
            backward,
            inputs: specs(&inputs, "inputs")?,
            outputs: specs(&outputs, "outputs")?,
            batchable,
        };
        let me = keypair.inner.public();
        let stakes = match ledger {
            None => Stakes::Memory(Arc::new(MemoryStakes::new())),
            Some(l) => {
                let temperature = temperature
                    .unwrap_or_else(|| bt_neuron::weights::WeightConfig::default().temperature);
                if !(temperature.is_finite() && temperature > 0.0) {
                    return Err(PyValueError::new_err(format!(
                        "temperature must be above 0, got {temperature}"
                    )));
                }
                Stakes::Ledger {
                    view: Arc::new(LedgerView::new(me, temperature, mask)),
                    link: Arc::new(tokio::sync::Mutex::new(Failover::new(l.urls(py)))),
                    refresh: seconds(refresh)?.max(Duration::from_millis(100)),
                }
            }
        };
        let view = stakes.view();
        let config = AxonConfig {
            workers,
            queue_capacity,
            max_request_bytes,
            default_timeout: seconds(default_timeout)?,
            max_timeout: seconds(max_timeout)?,
            nonce_window: seconds(nonce_window)?,
            ..AxonConfig::default()
        };
        let axon = RustAxon::new(me, Arc::new(model), view, config).map_err(wire_error)?;
        Ok(Axon {
            axon,
            stakes,
            handle: None,
            refresher: None,
        })
    }

    /// Starts serving on `address` (`ip:port`; port 0 picks a free one); returns the address
    /// bound (`ip:port`, as the ledger registers it). With a ledger, reads the metagraph once
    /// before serving and again every `refresh` seconds.
    #[pyo3(signature = (address = "127.0.0.1:0"))]
    fn serve(&mut self, py: Python<'_>, address: &str) -> PyResult<String> {
        if self.handle.is_some() {
            return Err(BtError::new_err("this axon is already serving"));
        }
        let addr: SocketAddr = address.parse().map_err(|e| {
            PyValueError::new_err(format!("address {address:?} is not ip:port: {e}"))
        })?;
        if let Stakes::Ledger {
            view,
            link,
            refresh,
        } = &self.stakes
        {
            block_on(py, refresh_view(link, view))?.map_err(ledger_error)?;
            let (view, link, every) = (view.clone(), link.clone(), *refresh);
            self.refresher = Some(runtime()?.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // A lost node is noted by the failover; the next round asks another.
                    let _ = refresh_view(&link, &view).await;
                }
            }));
        }
        let axon = self.axon.clone();
        let rt = runtime()?;
        let handle = py
            .detach(|| rt.block_on(async move { axon.spawn(addr).await }))
            .map_err(wire_error)?;
        let bound = handle.endpoint();
        self.handle = Some(handle);
        Ok(bound.trim_start_matches("http://").to_string())
    }

    /// The address being served (`ip:port`), or None before `serve`.
    #[getter]
    fn address(&self) -> Option<String> {
        self.handle
            .as_ref()
            .map(|h| h.endpoint().trim_start_matches("http://").to_string())
    }

    /// The axon's hotkey (SS58).
    #[getter]
    fn hotkey(&self) -> String {
        self.axon.hotkey().to_string()
    }

    /// Sets a caller's stake in TAO (orders the queue) when the axon has no ledger.
    fn set_stake(&self, hotkey: &str, tao: f64) -> PyResult<()> {
        let Stakes::Memory(m) = &self.stakes else {
            return Err(BtError::new_err(
                "this axon reads stakes from its ledger; set_stake is for axons without one",
            ));
        };
        if !(tao.is_finite() && tao >= 0.0) {
            return Err(PyValueError::new_err(format!(
                "stake {tao} TAO must be 0 or more"
            )));
        }
        m.set(
            public_key(hotkey)?,
            (tao * bt_ledger::RAO_PER_TAO as f64).round() as u64,
        );
        Ok(())
    }

    /// Reads the ledger's metagraph now (stakes and masks); returns its height.
    fn refresh(&self, py: Python<'_>) -> PyResult<u64> {
        let Stakes::Ledger { view, link, .. } = &self.stakes else {
            return Err(BtError::new_err("this axon has no ledger"));
        };
        block_on(py, refresh_view(link, view))?.map_err(ledger_error)
    }

    /// The share of its answer this axon gives `caller` (the competitive mask; 1 without a
    /// ledger or with the mask off).
    fn response_scale(&self, caller: &str) -> PyResult<f32> {
        Ok(self.stakes.view().response_scale(&public_key(caller)?))
    }

    /// Pauses (False: every request is answered `unavailable`) or resumes serving.
    fn set_serving(&self, serving: bool) {
        self.axon.set_serving(serving);
    }

    /// Requests waiting for the model.
    #[getter]
    fn queue_depth(&self) -> usize {
        self.axon.queue_depth()
    }

    /// Stops serving (also when the object is collected).
    fn stop(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        if let Some(h) = self.handle.take() {
            block_on(py, h.shutdown())?.map_err(wire_error)?;
        }
        Ok(())
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        py: Python<'_>,
        _kind: Option<Bound<'_, PyAny>>,
        _value: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Axon(hotkey={}, address={})",
            self.axon.hotkey(),
            self.address().unwrap_or_else(|| "not serving".into())
        )
    }
}

impl Drop for Axon {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
    }
}

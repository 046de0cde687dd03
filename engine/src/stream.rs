//! The fluent API: [`StreamEnv`], [`Stream`] and [`KeyedStream`].
//!
//! Calls on these types only *describe* the job: each appends an operator to the job graph.
//! Nothing runs until [`StreamEnv::execute`] (bounded jobs) or [`StreamEnv::start`] (a handle
//! for live jobs).

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use crate::config::Config;
use crate::error::JobError;
use crate::keys::{Key, StateData};
use crate::metrics::JobMetrics;
use crate::operators::key_by::KeyByFactory;
use crate::operators::process::ProcessFactory;
use crate::operators::process_stateless::ProcessFnFactory;
use crate::operators::sink::SinkFactory;
use crate::operators::source::{FusedStrategy, SourceFactory};
use crate::operators::stateless::{FilterFn, FlatMapFn, InspectFn, MapFn, StatelessFactory};
use crate::operators::union::UnionFactory;
use crate::operators::watermarks::WatermarkFactory;
use crate::operators::window_pane::PaneWindowFactory;
use crate::operators::window_session::SessionWindowFactory;
use crate::process::{Context, KeyedProcessFunction, ProcessFunction};
use crate::runtime::graph::{Edge, Graph, NodeFactory, NodeSpec, SidePort};
use crate::runtime::job::{self, JobHandle};
use crate::side_output::{side_maker, OutputTag};
use crate::sink::Sink;
use crate::source::Source;
use crate::state::{StateRegistry, ValueState};
use crate::watermark::{TimestampAssigner, WatermarkStrategy};
use crate::window::function::{AggregateFn, ProcessWindowFn, ReduceAgg, WindowFn};
use crate::window::{Aggregate, Count, Window, WindowResult, WindowSpec};

/// What a stream element must be: cloneable (for fan-out) and sendable (across workers).
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// The entry point: holds the configuration and the job graph being described.
///
/// `StreamEnv` is a cheap handle (clones share the same job). It is not `Send`: a job is
/// described on one thread, then runs on its own worker threads.
#[derive(Clone)]
pub struct StreamEnv {
    inner: Rc<RefCell<EnvInner>>,
}

struct EnvInner {
    config: Config,
    graph: Option<Graph>,
    fusable: Vec<Option<Arc<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for StreamEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("StreamEnv")
            .field("config", &inner.config)
            .field(
                "operators",
                &inner.graph.as_ref().map_or(0, |g| g.nodes.len()),
            )
            .finish()
    }
}

impl StreamEnv {
    /// A new, empty job with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            inner: Rc::new(RefCell::new(EnvInner {
                config,
                graph: Some(Graph::default()),
                fusable: Vec::new(),
            })),
        }
    }

    /// The job's configuration.
    pub fn config(&self) -> Config {
        self.inner.borrow().config.clone()
    }

    /// Adds a source. Its splits are spread over the workers round-robin.
    pub fn source<T: Data>(&self, source: impl Source<T>) -> Stream<T> {
        let strategy: Arc<OnceLock<FusedStrategy<T>>> = Arc::new(OnceLock::new());
        let id = self.add_node(
            "source",
            Vec::new(),
            Box::new(SourceFactory {
                source: Arc::new(source),
                strategy: strategy.clone(),
            }),
            false,
        );
        self.inner.borrow_mut().fusable[id] = Some(strategy);
        Stream::new(self.clone(), id, 0)
    }

    /// Runs the job to completion (bounded sources) and returns its metrics.
    ///
    /// # Errors
    ///
    /// [`JobError::Config`] or [`JobError::Graph`] before anything runs; otherwise the first
    /// failure of an operator, naming it.
    pub fn execute(&self) -> Result<JobMetrics, JobError> {
        self.start()?.join()
    }

    /// Starts the job on its worker threads and returns a handle to observe, stop or join it.
    ///
    /// # Errors
    ///
    /// [`JobError::Config`] or [`JobError::Graph`] (including a second `start` of the same
    /// environment); [`JobError::Spawn`] if threads cannot be created.
    pub fn start(&self) -> Result<JobHandle, JobError> {
        let (graph, config) = {
            let mut inner = self.inner.borrow_mut();
            let graph = inner.graph.take().ok_or_else(|| {
                JobError::Graph("this environment's job was already started".into())
            })?;
            (graph, inner.config.clone())
        };
        job::start(graph, config)
    }

    fn add_node(
        &self,
        name: &str,
        inputs: Vec<Edge>,
        factory: Box<dyn NodeFactory>,
        has_side_outputs: bool,
    ) -> usize {
        let mut inner = self.inner.borrow_mut();
        inner.fusable.push(None);
        let graph = inner.graph.as_mut().expect(
            "this environment's job was already started; describe a new job with a new StreamEnv",
        );
        graph.nodes.push(NodeSpec {
            name: name.to_string(),
            inputs,
            side_ports: Vec::new(),
            has_side_outputs,
            factory,
        });
        graph.nodes.len() - 1
    }

    fn with_graph<R>(&self, f: impl FnOnce(&mut Graph) -> R) -> R {
        let mut inner = self.inner.borrow_mut();
        f(inner.graph.as_mut().expect(
            "this environment's job was already started; describe a new job with a new StreamEnv",
        ))
    }
}

/// A stream of `T`: one output of an operator in the job graph.
///
/// Cloning a `Stream` and consuming both clones fans the stream out (each consumer sees every
/// record).
pub struct Stream<T> {
    env: StreamEnv,
    node: usize,
    port: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Self {
            env: self.env.clone(),
            node: self.node,
            port: self.port,
            _t: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("node", &self.node)
            .field("port", &self.port)
            .finish()
    }
}

impl<T: Data> Stream<T> {
    fn new(env: StreamEnv, node: usize, port: usize) -> Self {
        Self {
            env,
            node,
            port,
            _t: PhantomData,
        }
    }

    fn edge(&self) -> Edge {
        Edge {
            from: self.node,
            port: self.port,
        }
    }

    fn then<U: Data>(&self, name: &str, factory: Box<dyn NodeFactory>, side: bool) -> Stream<U> {
        let id = self.env.add_node(name, vec![self.edge()], factory, side);
        Stream::new(self.env.clone(), id, 0)
    }

    /// Names the operator that produces this stream (shown in metrics and errors).
    ///
    /// # Checkpointing
    ///
    /// A restore matches a checkpoint's operators to the job's by name (the `k`-th of a name to
    /// the `k`-th of that name), so a stateful operator should have a name of its own, kept
    /// from one version of the job to the next, as Flink's `uid`.
    pub fn name(self, name: &str) -> Self {
        if self.port == 0 {
            self.env
                .with_graph(|g| g.nodes[self.node].name = name.to_string());
        }
        self
    }

    /// Transforms every record. The timestamp is kept.
    pub fn map<U: Data>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        self.then(
            "map",
            Box::new(StatelessFactory::<T, U, _>::new(MapFn(f))),
            false,
        )
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        self.then(
            "filter",
            Box::new(StatelessFactory::<T, T, _>::new(FilterFn(f))),
            false,
        )
    }

    /// Replaces every record by zero or more records, all with its timestamp.
    pub fn flat_map<U: Data, I: IntoIterator<Item = U> + 'static>(
        self,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Stream<U> {
        self.then(
            "flat_map",
            Box::new(StatelessFactory::<T, U, _>::new(FlatMapFn(f))),
            false,
        )
    }

    /// Calls `f` on every record and passes it on unchanged.
    pub fn inspect(self, f: impl Fn(&T) + Send + Sync + 'static) -> Stream<T> {
        self.then(
            "inspect",
            Box::new(StatelessFactory::<T, T, _>::new(InspectFn(f))),
            false,
        )
    }

    /// Runs a [`ProcessFunction`]: any number of results per record, and side outputs. `make` is
    /// called once per worker.
    pub fn process<F, C>(self, make: C) -> Stream<F::Out>
    where
        C: Fn() -> F + Send + Sync + 'static,
        F: ProcessFunction<T>,
    {
        self.then(
            "process",
            Box::new(ProcessFnFactory::<T, C> {
                make: Arc::new(make),
                _t: PhantomData,
            }),
            true,
        )
    }

    /// Merges this stream with `others`. The result's watermark is the minimum of the inputs'.
    pub fn union(self, others: impl IntoIterator<Item = Stream<T>>) -> Stream<T> {
        let mut inputs = vec![self.edge()];
        inputs.extend(others.into_iter().map(|s| s.edge()));
        let n = inputs.len();
        let id = self.env.add_node(
            "union",
            inputs,
            Box::new(UnionFactory::<T> {
                inputs: n,
                _t: PhantomData,
            }),
            false,
        );
        Stream::new(self.env.clone(), id, 0)
    }

    /// Assigns event timestamps and generates watermarks (see [`crate::watermark`]).
    ///
    /// Applied directly to a source that has no other consumer yet, the strategy becomes part
    /// of the source and tracks a watermark per split; otherwise it is an operator of its own.
    pub fn with_watermarks<A: TimestampAssigner<T>>(
        self,
        strategy: WatermarkStrategy<A>,
    ) -> Stream<T> {
        let erased: WatermarkStrategy<Arc<dyn TimestampAssigner<T>>> = WatermarkStrategy {
            bound: strategy.bound,
            idle_timeout: strategy.idle_timeout,
            max_drift: strategy.max_drift,
            assigner: Arc::new(strategy.assigner),
        };
        if self.port == 0 && !self.has_consumers() {
            let slot = self.env.inner.borrow().fusable[self.node].clone();
            if let Some(slot) = slot {
                if let Ok(slot) = slot.downcast::<OnceLock<FusedStrategy<T>>>() {
                    if slot.set(erased.clone()).is_ok() {
                        return self;
                    }
                }
            }
        }
        self.then(
            "watermarks",
            Box::new(WatermarkFactory { strategy: erased }),
            false,
        )
    }

    fn has_consumers(&self) -> bool {
        let (node, port) = (self.node, self.port);
        self.env.with_graph(|g| {
            g.nodes
                .iter()
                .any(|n| n.inputs.iter().any(|e| e.from == node && e.port == port))
        })
    }

    /// Partitions the stream by key: every record with the same key goes to the same worker,
    /// in order per sending worker.
    ///
    /// # Watermarks
    ///
    /// The receiving side's watermark is the minimum over all sending workers.
    pub fn key_by<K: Key, F>(self, key: F) -> KeyedStream<K, T>
    where
        F: Fn(&T) -> K + Send + Sync + 'static,
    {
        let id = self.env.add_node(
            "key_by",
            vec![self.edge()],
            Box::new(KeyByFactory::<K, T, F> {
                key_fn: Arc::new(key),
                _t: PhantomData,
            }),
            false,
        );
        KeyedStream {
            inner: Stream::new(self.env.clone(), id, 0),
        }
    }

    /// Writes the stream to `sink`. The returned handle can name the sink operator.
    pub fn sink(self, sink: impl Sink<T>) -> SinkHandle {
        let node = self.env.add_node(
            "sink",
            vec![self.edge()],
            Box::new(SinkFactory {
                sink: Arc::new(sink),
                _t: PhantomData,
            }),
            false,
        );
        SinkHandle {
            env: self.env.clone(),
            node,
        }
    }

    /// The side output `tag` of the operator that produces this stream.
    ///
    /// Process functions (keyed and not) and windows have side outputs; asking another operator
    /// for one makes `execute` fail with [`JobError::Graph`].
    pub fn side_output<X: Data>(&self, tag: &OutputTag<X>) -> Stream<X> {
        let node = self.node;
        let port = self.env.with_graph(|g| {
            let spec = &mut g.nodes[node];
            if !spec.has_side_outputs {
                let msg = format!(
                    "side output `{}` requested from operator #{node} `{}`, which has no side outputs",
                    tag.name(),
                    spec.name
                );
                g.errors.push(msg);
                return None;
            }
            if let Some(i) = spec.side_ports.iter().position(|p| p.tag == tag.id) {
                return Some(i + 1);
            }
            spec.side_ports.push(SidePort {
                name: tag.name().to_string(),
                tag: tag.id,
                make: side_maker::<X>(tag.id),
            });
            Some(spec.side_ports.len())
        });
        match port {
            Some(port) => Stream::new(self.env.clone(), node, port),
            // An empty stream that execute() will refuse anyway; keeps the builder chainable.
            None => Stream::new(self.env.clone(), node, usize::MAX),
        }
    }
}

/// A stream partitioned by key `K`. Keyed operators see `(key, value)` and keyed state.
pub struct KeyedStream<K, T> {
    inner: Stream<(K, T)>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    /// Names the `key_by` operator.
    pub fn name(self, name: &str) -> Self {
        Self {
            inner: self.inner.name(name),
        }
    }

    /// The keyed records as a plain stream of `(key, value)`.
    pub fn into_stream(self) -> Stream<(K, T)> {
        self.inner
    }

    /// Keeps the records for which `f` is true. They stay on the worker that owns their key, so
    /// the result is still keyed, without another exchange: one `key_by` can feed several
    /// keyed operators that each want part of it (clone the `KeyedStream`).
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> KeyedStream<K, T> {
        KeyedStream {
            inner: self.inner.filter(move |(_, v)| f(v)),
        }
    }

    /// Transforms every value, keeping its key and so its partition (no exchange). The
    /// timestamp is kept.
    pub fn map_values<U: Data>(
        self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> KeyedStream<K, U> {
        KeyedStream {
            inner: self.inner.map(move |(k, v)| (k, f(v))),
        }
    }

    /// Merges this stream with `others`, keyed by the same key type and so partitioned alike
    /// (no exchange). The result's watermark is the minimum of the inputs'.
    pub fn union(self, others: impl IntoIterator<Item = KeyedStream<K, T>>) -> KeyedStream<K, T> {
        KeyedStream {
            inner: self.inner.union(others.into_iter().map(|k| k.inner)),
        }
    }

    /// Runs a [`KeyedProcessFunction`]. `make` is called once per worker, with the registry in
    /// which the function declares its keyed state.
    ///
    /// # Watermarks
    ///
    /// See [`crate::process`]: event-time timers fire before the watermark is forwarded.
    pub fn process<F, C>(self, make: C) -> Stream<F::Out>
    where
        C: Fn(&mut StateRegistry<K>) -> F + Send + Sync + 'static,
        F: KeyedProcessFunction<K, T>,
    {
        self.inner.then(
            "process",
            Box::new(ProcessFactory::<K, T, C> {
                make: Arc::new(make),
                _t: PhantomData,
            }),
            true,
        )
    }

    /// Groups each key's records into event-time windows (see [`crate::window`]).
    pub fn window(self, spec: WindowSpec) -> WindowedStream<K, T> {
        WindowedStream {
            keyed: self,
            spec,
            lateness: 0,
            late_tag: None,
        }
    }

    /// A running reduce per key: for every record, emits `(key, reduced value so far)`.
    pub fn reduce(self, f: impl Fn(&T, T) -> T + Send + Sync + 'static) -> Stream<(K, T)>
    where
        T: StateData,
    {
        let f = Arc::new(f);
        self.process(move |reg| RunningReduce {
            acc: reg.value("reduce"),
            f: f.clone(),
        })
        .name("reduce")
    }
}

/// The sink operator added by [`Stream::sink`].
#[derive(Debug)]
pub struct SinkHandle {
    env: StreamEnv,
    node: usize,
}

impl SinkHandle {
    /// Names the sink operator (shown in metrics and errors, and matched on restore: see
    /// [`Stream::name`]).
    pub fn name(self, name: &str) -> Self {
        let node = self.node;
        self.env
            .with_graph(|g| g.nodes[node].name = name.to_string());
        self
    }
}

/// A keyed stream grouped into windows; finish it with [`aggregate`](Self::aggregate),
/// [`count`](Self::count), [`reduce`](Self::reduce) or [`process`](Self::process).
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    spec: WindowSpec,
    lateness: i64,
    late_tag: Option<OutputTag<T>>,
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    /// Keeps window state for `lateness` after a window fired: later elements update the result
    /// (emitted again, with `is_update` set when it replaces a result emitted earlier for that key
    /// and window) instead of being late. Default: zero.
    pub fn allowed_lateness(mut self, lateness: std::time::Duration) -> Self {
        self.lateness = crate::time::duration_ms(lateness);
        self
    }

    /// Sends late elements (behind every window's lateness) to the side output `tag`; get it
    /// with [`Stream::side_output`] on the result. Without it late elements are only counted
    /// (the operator's `late` metric).
    pub fn late_data(mut self, tag: &OutputTag<T>) -> Self {
        self.late_tag = Some(tag.clone());
        self
    }

    /// Aggregates each window incrementally: one accumulator per key and window.
    pub fn aggregate<A: Aggregate<T>>(self, agg: A) -> Stream<WindowResult<K, A::Out>> {
        self.build("window", AggregateFn(agg))
    }

    /// Counts each window's elements.
    pub fn count(self) -> Stream<WindowResult<K, u64>> {
        self.aggregate(Count).name("window_count")
    }

    /// Reduces each window's elements with `f`.
    pub fn reduce(
        self,
        f: impl Fn(&T, T) -> T + Send + Sync + 'static,
    ) -> Stream<WindowResult<K, T>>
    where
        T: StateData,
    {
        self.aggregate(ReduceAgg(f, PhantomData))
            .name("window_reduce")
    }

    /// Hands all of a window's elements (in arrival order) to `f`, with the key and window.
    /// Keeps every element in state until the window is cleaned up: prefer
    /// [`aggregate`](Self::aggregate) when an accumulator suffices.
    pub fn process<O: Data>(
        self,
        f: impl Fn(&K, Window, &[T]) -> O + Send + Sync + 'static,
    ) -> Stream<WindowResult<K, O>>
    where
        T: StateData,
    {
        self.build("window_process", ProcessWindowFn(f, PhantomData))
    }

    fn build<W: WindowFn<K, T>>(self, name: &str, f: W) -> Stream<WindowResult<K, W::Out>> {
        let input = self.keyed.inner;
        if let Err(e) = self.spec.validate() {
            input.env.with_graph(|g| g.errors.push(e));
        }
        let f = Arc::new(f);
        let factory: Box<dyn NodeFactory> = match self.spec {
            WindowSpec::Sliding {
                size,
                slide,
                offset,
            } => Box::new(PaneWindowFactory {
                f,
                size,
                slide,
                offset,
                lateness: self.lateness,
                late_tag: self.late_tag,
                _k: PhantomData,
            }),
            WindowSpec::Session { gap } => Box::new(SessionWindowFactory {
                f,
                gap,
                lateness: self.lateness,
                late_tag: self.late_tag,
                _k: PhantomData,
            }),
        };
        input.then(name, factory, true)
    }
}

struct RunningReduce<T, F> {
    acc: ValueState<T>,
    f: Arc<F>,
}

impl<K: Key, T: Data + StateData, F: Fn(&T, T) -> T + Send + Sync + 'static>
    KeyedProcessFunction<K, T> for RunningReduce<T, F>
{
    type Out = (K, T);

    #[inline]
    fn process(&mut self, key: &K, value: T, ctx: &mut Context<'_, K, (K, T)>) {
        let table = ctx.value(self.acc);
        // Update in place: one lookup for a known key.
        let next = match table.get_mut(key) {
            Some(acc) => {
                let next = (self.f)(acc, value);
                *acc = next.clone();
                next
            }
            None => {
                table.set(key, value.clone());
                value
            }
        };
        ctx.emit((key.clone(), next));
    }
}

//! Window functions: incremental [`Aggregate`]s, reductions, and full-contents processing.

use std::marker::PhantomData;

use crate::window::Window;

/// An incremental aggregation: one accumulator per key and window, never a buffer of elements.
///
/// `merge` combines two accumulators; it is used when sliding windows combine panes and when
/// sessions merge.
///
/// # Examples
///
/// ```
/// use sluice_engine::window::Aggregate;
/// /// Average of i64 values.
/// struct Avg;
/// impl Aggregate<i64> for Avg {
///     type Acc = (i64, u64);
///     type Out = f64;
///     fn create(&self) -> (i64, u64) { (0, 0) }
///     fn add(&self, acc: &mut (i64, u64), v: i64) { acc.0 += v; acc.1 += 1; }
///     fn merge(&self, acc: &mut (i64, u64), other: (i64, u64)) { acc.0 += other.0; acc.1 += other.1; }
///     fn finish(&self, acc: &(i64, u64)) -> f64 { acc.0 as f64 / acc.1 as f64 }
/// }
/// ```
pub trait Aggregate<T>: Send + Sync + 'static {
    /// The accumulator.
    type Acc: Clone + Send + crate::keys::StateData;
    /// The result.
    type Out: Clone + Send + 'static;
    /// A fresh accumulator.
    fn create(&self) -> Self::Acc;
    /// Adds one element.
    fn add(&self, acc: &mut Self::Acc, value: T);
    /// Adds `other` into `acc`.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    /// The result for an accumulator.
    fn finish(&self, acc: &Self::Acc) -> Self::Out;
}

/// Counts elements.
#[derive(Debug, Clone, Copy, Default)]
pub struct Count;

impl<T> Aggregate<T> for Count {
    type Acc = u64;
    type Out = u64;
    #[inline]
    fn create(&self) -> u64 {
        0
    }
    #[inline]
    fn add(&self, acc: &mut u64, _value: T) {
        *acc += 1;
    }
    #[inline]
    fn merge(&self, acc: &mut u64, other: u64) {
        *acc += other;
    }
    #[inline]
    fn finish(&self, acc: &u64) -> u64 {
        *acc
    }
}

/// What the window operators run: an aggregation that may also see the key and window.
pub(crate) trait WindowFn<K, T>: Send + Sync + 'static {
    type Acc: Clone + Send + crate::keys::StateData;
    type Out: Clone + Send + 'static;
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: T);
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc);
    fn finish(&self, key: &K, window: Window, acc: &Self::Acc) -> Self::Out;
}

/// An [`Aggregate`] as a window function.
pub(crate) struct AggregateFn<A>(pub(crate) A);

impl<K, T, A: Aggregate<T>> WindowFn<K, T> for AggregateFn<A> {
    type Acc = A::Acc;
    type Out = A::Out;
    #[inline]
    fn create(&self) -> A::Acc {
        self.0.create()
    }
    #[inline]
    fn add(&self, acc: &mut A::Acc, value: T) {
        self.0.add(acc, value)
    }
    #[inline]
    fn merge(&self, acc: &mut A::Acc, other: A::Acc) {
        self.0.merge(acc, other)
    }
    #[inline]
    fn finish(&self, _key: &K, _window: Window, acc: &A::Acc) -> A::Out {
        self.0.finish(acc)
    }
}

/// `reduce(f)`: an aggregate whose accumulator is the reduced element.
pub(crate) struct ReduceAgg<F, T>(pub(crate) F, pub(crate) PhantomData<fn(T)>);

impl<T, F> Aggregate<T> for ReduceAgg<F, T>
where
    T: Clone + Send + crate::keys::StateData,
    F: Fn(&T, T) -> T + Send + Sync + 'static,
{
    type Acc = Option<T>;
    type Out = T;
    #[inline]
    fn create(&self) -> Option<T> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<T>, value: T) {
        *acc = Some(match acc.take() {
            Some(a) => (self.0)(&a, value),
            None => value,
        });
    }
    #[inline]
    fn merge(&self, acc: &mut Option<T>, other: Option<T>) {
        if let Some(o) = other {
            self.add(acc, o);
        }
    }
    fn finish(&self, acc: &Option<T>) -> T {
        acc.clone()
            .expect("a window fires only once it holds an element")
    }
}

/// `process(f)`: keeps the window's elements and hands them to `f` with the key and window.
pub(crate) struct ProcessWindowFn<F, T>(pub(crate) F, pub(crate) PhantomData<fn(T)>);

impl<K, T, O, F> WindowFn<K, T> for ProcessWindowFn<F, T>
where
    T: Clone + Send + crate::keys::StateData,
    O: Clone + Send + 'static,
    F: Fn(&K, Window, &[T]) -> O + Send + Sync + 'static,
{
    type Acc = Vec<T>;
    type Out = O;
    fn create(&self) -> Vec<T> {
        Vec::new()
    }
    #[inline]
    fn add(&self, acc: &mut Vec<T>, value: T) {
        acc.push(value);
    }
    fn merge(&self, acc: &mut Vec<T>, mut other: Vec<T>) {
        acc.append(&mut other);
    }
    fn finish(&self, key: &K, window: Window, acc: &Vec<T>) -> O {
        (self.0)(key, window, acc)
    }
}

//! Geo zones derived from coordinates: the H3 cell of a point ([`h3_zone`]).
//!
//! Deriving a cell (`h3o`'s `LatLng::to_cell`) is trigonometry on an icosahedron face: a few
//! thousand instructions, for nearly every event of a run (surge and live state need the zone
//! of every driver position). Consecutive positions of a city's drivers fall in a few hundred
//! cells, so each thread remembers, per square of a coarse grid, the last two cells derived
//! there, each with a region that lies wholly inside it. A point in one of those regions is in
//! that cell, with no trigonometry; any other point is derived in full. The answer is always
//! the cell `to_cell` gives (tests check millions of points, many near cell edges).
//!
//! The region: the cell's boundary polygon with every edge moved inwards by a margin, a share
//! of the distance from the center to the nearest edge (and, tested first because it is
//! cheaper, the disc of that radius less the margin around the center). Distances are measured
//! in a plane tangent at the center (degrees of latitude, and of longitude scaled by the cosine
//! of the center's latitude). That plane's error grows with a cell's size (about 1e-4 relative
//! at resolution 7 in mid latitudes, some percent at resolutions 1 and 2), so the margin does:
//! 1% from resolution 6 on, 5% below (1% is wrong at resolutions 1 and 2, which a test shows).
//! Cells near the poles or the antimeridian, where that plane is a poor fit, get no region; a
//! polygon that is not convex in that plane gets the disc only.
//! (A point inside a convex polygon and farther than the margin from each edge's line is
//! farther than the margin from its boundary.) At resolution 7 the region covers about 98% of
//! a cell (90% with a 5% margin; the disc alone, 82%).

use std::cell::RefCell;
use std::sync::Arc;

use h3o::{CellIndex, LatLng, Resolution};
use sluice_engine::keys::{fast_map, FastMap};

use super::{Point, MAX_INTERNED};

/// Most edges a cell's boundary has (a hexagon's six, plus the vertices where it crosses
/// icosahedron edges).
const MAX_EDGES: usize = 10;

/// A derived cell: its name, and the region certainly inside it.
struct Cell {
    name: Arc<str>,
    resolution: u8,
    /// Center, degrees.
    lat: f64,
    lon: f64,
    /// Cosine of the center's latitude: degrees of longitude to degrees of arc, near it.
    cos_lat: f64,
    /// Squared radius of the disc, in (tangent-plane) degrees; 0: no disc.
    r2: f64,
    /// The shrunk polygon as half-planes `nx * x + ny * y >= c` (tangent plane, relative to
    /// the center); the first `edges` are used (0: none).
    planes: [(f64, f64, f64); MAX_EDGES],
    edges: usize,
}

impl Cell {
    fn new(cell: CellIndex) -> Self {
        let center = LatLng::from(cell);
        let (lat, lon) = (center.lat(), center.lng());
        let cos_lat = lat.to_radians().cos();
        let mut r2 = 0.0;
        let mut planes = [(0.0, 0.0, 0.0); MAX_EDGES];
        let mut edges = 0;
        if lat.abs() < 80.0 {
            let boundary = cell.boundary();
            let plane: Vec<(f64, f64)> = boundary
                .iter()
                .map(|v| ((v.lng() - lon) * cos_lat, v.lat() - lat))
                .collect();
            // Far from the antimeridian, every vertex is within a degree or so of the center.
            if plane.len() >= 3 && plane.iter().all(|(x, y)| x.abs() < 5.0 && y.abs() < 5.0) {
                let nearest = (0..plane.len())
                    .map(|i| distance_to_segment(plane[i], plane[(i + 1) % plane.len()]))
                    .fold(f64::INFINITY, f64::min);
                let r = nearest * (1.0 - margin(cell.resolution()));
                r2 = r * r;
                if let Some(p) = shrunk_polygon(&plane, nearest - r) {
                    edges = p.len();
                    planes[..edges].copy_from_slice(&p);
                }
            }
        }
        Self {
            name: Arc::from(cell.to_string()),
            resolution: u8::from(cell.resolution()),
            lat,
            lon,
            cos_lat,
            r2,
            planes,
            edges,
        }
    }

    #[inline]
    fn contains(&self, p: Point, resolution: u8) -> bool {
        if resolution != self.resolution {
            return false;
        }
        let x = (p.lon - self.lon) * self.cos_lat;
        let y = p.lat - self.lat;
        // Both tests are false for NaN coordinates.
        x * x + y * y < self.r2
            || (self.edges > 0
                && self.planes[..self.edges]
                    .iter()
                    .all(|&(nx, ny, c)| nx * x + ny * y >= c))
    }
}

/// The share of a cell's inradius left out of its region (see the module docs).
fn margin(resolution: Resolution) -> f64 {
    if resolution >= Resolution::Six {
        0.01
    } else {
        0.05
    }
}

/// The polygon `pts` (around the origin) with each edge moved inwards by `margin`, as
/// half-planes; `None` if it is not convex (or has more than [`MAX_EDGES`] edges).
fn shrunk_polygon(pts: &[(f64, f64)], margin: f64) -> Option<Vec<(f64, f64, f64)>> {
    if pts.len() > MAX_EDGES || margin <= 0.0 {
        return None;
    }
    let n = pts.len();
    let mut planes = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (pts[i], pts[(i + 1) % n]);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len = (dx * dx + dy * dy).sqrt();
        if len == 0.0 {
            return None;
        }
        // The unit normal pointing to the origin (the center, inside).
        let (mut nx, mut ny) = (-dy / len, dx / len);
        if nx * a.0 + ny * a.1 > 0.0 {
            (nx, ny) = (-nx, -ny);
        }
        let on_edge = nx * a.0 + ny * a.1;
        // Convex: every vertex on the inner side of every edge's line.
        let slack = 1e-9 * len;
        if pts.iter().any(|v| nx * v.0 + ny * v.1 < on_edge - slack) {
            return None;
        }
        planes.push((nx, ny, on_edge + margin));
    }
    Some(planes)
}

/// Distance from the origin to the segment `a`-`b`.
fn distance_to_segment(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(a.0 * dx + a.1 * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (x, y) = (a.0 + t * dx, a.1 + t * dy);
    (x * x + y * y).sqrt()
}

/// Grid squares remembered per thread (direct-mapped).
const SLOTS: usize = 4096;
/// Side of a grid square, degrees (about 500 m of latitude): well under a resolution-7 cell.
const SQUARE: f64 = 0.005;
/// No cell, in a slot.
const NONE: u32 = u32::MAX;

struct Cache {
    /// Every cell derived on this thread, by cell number: its position in `cells`.
    index: FastMap<u64, u32>,
    cells: Vec<Cell>,
    /// Per grid square (hashed), the last two cells derived in it, the latest first.
    slots: Vec<[u32; 2]>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        index: fast_map(),
        cells: Vec::new(),
        slots: vec![[NONE; 2]; SLOTS],
    });
}

#[inline]
fn slot(p: Point) -> usize {
    let (gx, gy) = (
        (p.lat / SQUARE).floor() as i64,
        (p.lon / SQUARE).floor() as i64,
    );
    let h = (gx as u64)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((gy as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    (h >> 52) as usize % SLOTS
}

/// The H3 cell (as its hex string) of a point at `resolution` (clamped to 0..=15).
///
/// Zone names are interned per thread: a city has a few hundred cells at resolution 7, so
/// events share one `Arc<str>` per cell instead of formatting and allocating a string each.
/// Most calls derive no cell at all: each thread remembers, per square of a coarse grid, a
/// region certainly inside each of the last two cells derived there (exact: the answer is
/// always `to_cell`'s).
pub fn h3_zone(p: Point, resolution: u8) -> Arc<str> {
    let resolution = resolution.min(15);
    let at = slot(p);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let c = &mut *c;
        let [first, second] = c.slots[at];
        if first != NONE && c.cells[first as usize].contains(p, resolution) {
            return c.cells[first as usize].name.clone();
        }
        if second != NONE && c.cells[second as usize].contains(p, resolution) {
            c.slots[at] = [second, first];
            return c.cells[second as usize].name.clone();
        }
        let Ok(ll) = LatLng::new(p.lat, p.lon) else {
            // Unreachable for validated points; a stable name rather than a panic.
            return Arc::from("invalid");
        };
        let res = Resolution::try_from(resolution).unwrap_or(Resolution::Seven);
        let index = ll.to_cell(res);
        if c.cells.len() >= MAX_INTERNED {
            c.index.clear();
            c.cells.clear();
            c.slots.fill([NONE; 2]);
        }
        let cells = &mut c.cells;
        let k = *c.index.entry(u64::from(index)).or_insert_with(|| {
            cells.push(Cell::new(index));
            (cells.len() - 1) as u32
        });
        let [first, _] = c.slots[at];
        if first != k {
            c.slots[at] = [k, first];
        }
        c.cells[k as usize].name.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(p: Point, resolution: u8) -> String {
        let res = Resolution::try_from(resolution).unwrap();
        LatLng::new(p.lat, p.lon).unwrap().to_cell(res).to_string()
    }

    /// A tiny deterministic generator (no test dependency needed for this).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Random walks over a city (as drivers move), at several resolutions: every zone is the
    /// one `to_cell` gives.
    #[test]
    fn cached_zones_equal_derived_cells_along_random_walks() {
        let mut rng = Lcg(7);
        for resolution in [5u8, 7, 9] {
            let mut p = Point {
                lat: 40.75,
                lon: -73.98,
            };
            for _ in 0..60_000 {
                p.lat = (p.lat + (rng.next() - 0.5) * 0.004).clamp(40.5, 41.0);
                p.lon = (p.lon + (rng.next() - 0.5) * 0.004).clamp(-74.3, -73.7);
                assert_eq!(&*h3_zone(p, resolution), direct(p, resolution), "{p:?}");
            }
        }
    }

    /// Points inside and outside the edges of many cells, at every resolution and in several
    /// latitudes, visited after a point near each center has primed the cache with that cell.
    #[test]
    fn cached_zones_equal_derived_cells_at_cell_edges() {
        let mut rng = Lcg(11);
        let mut checked = 0;
        for i in 0..800 {
            let res = (i % 16) as u8;
            let lat = -70.0 + rng.next() * 140.0;
            let lon = -179.0 + rng.next() * 358.0;
            let cell = LatLng::new(lat, lon)
                .unwrap()
                .to_cell(Resolution::try_from(res).unwrap());
            let center = LatLng::from(cell);
            let c = Point {
                lat: center.lat(),
                lon: center.lng(),
            };
            assert_eq!(&*h3_zone(c, res), direct(c, res));
            let boundary = cell.boundary();
            let n = boundary.len();
            for i in 0..n {
                let (a, b) = (boundary[i], boundary[(i + 1) % n]);
                for t in [0.0, 0.25, 0.5, 0.75] {
                    let edge = (
                        a.lat() + t * (b.lat() - a.lat()),
                        a.lng() + t * (b.lng() - a.lng()),
                    );
                    // From 10% of the way in, through 1e-9 degrees either side of the edge,
                    // to 5% out.
                    for f in [
                        0.9,
                        0.93,
                        0.95,
                        0.97,
                        0.99,
                        0.999_999,
                        1.0,
                        1.000_000_1,
                        1.01,
                        1.05,
                    ] {
                        let p = Point {
                            lat: c.lat + (edge.0 - c.lat) * f,
                            lon: c.lon + (edge.1 - c.lon) * f,
                        };
                        if !(-90.0..=90.0).contains(&p.lat) || !(-180.0..=180.0).contains(&p.lon) {
                            continue;
                        }
                        assert_eq!(&*h3_zone(p, res), direct(p, res), "{p:?} near {cell}");
                        // And again, now that its square may hold its own cell.
                        assert_eq!(&*h3_zone(c, res), direct(c, res));
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 50_000);
    }

    /// More cells than a thread interns: the table is cleared, with the slots that point into
    /// it, and zones stay right.
    #[test]
    fn a_full_cell_table_is_cleared_and_zones_stay_right() {
        let mut rng = Lcg(5);
        for i in 0..MAX_INTERNED + 2_000 {
            let p = Point {
                lat: -60.0 + rng.next() * 120.0,
                lon: -170.0 + rng.next() * 340.0,
            };
            let zone = h3_zone(p, 15);
            if i % 500 == 0 || i > MAX_INTERNED {
                assert_eq!(&*zone, direct(p, 15), "{p:?}");
            }
        }
        CACHE.with(|c| assert!(c.borrow().cells.len() < MAX_INTERNED));
    }

    /// The soundness of the region itself, at every resolution and latitude: no point it holds
    /// is outside its cell (the caching tests reach regions only where points fall in them).
    #[test]
    fn a_region_holds_no_point_outside_its_cell() {
        let mut rng = Lcg(13);
        let mut held = 0;
        for i in 0..16 * 24 {
            let res = Resolution::try_from((i % 16) as u8).unwrap();
            let lat = -80.0 + rng.next() * 160.0;
            let lon = -179.0 + rng.next() * 358.0;
            let cell = LatLng::new(lat, lon).unwrap().to_cell(res);
            let region = Cell::new(cell);
            let b = cell.boundary();
            let lats = b.iter().map(|v| v.lat());
            let lons = b.iter().map(|v| v.lng());
            let (lat0, lat1) = (
                lats.clone().fold(90.0, f64::min),
                lats.fold(-90.0, f64::max),
            );
            let (lon0, lon1) = (
                lons.clone().fold(180.0, f64::min),
                lons.fold(-180.0, f64::max),
            );
            for _ in 0..1_000 {
                let p = Point {
                    lat: lat0 + rng.next() * (lat1 - lat0),
                    lon: lon0 + rng.next() * (lon1 - lon0),
                };
                if region.contains(p, u8::from(res)) {
                    held += 1;
                    assert_eq!(direct(p, u8::from(res)), cell.to_string(), "{p:?} at {res}");
                }
            }
        }
        assert!(held > 100_000, "{held}");
    }

    #[test]
    fn the_region_is_most_of_the_cell() {
        let cell = LatLng::new(40.75, -73.98)
            .unwrap()
            .to_cell(Resolution::Seven);
        let c = Cell::new(cell);
        // A hexagon's inscribed disc is 91% of its area; less the 1% margin, about 89%.
        let hex_area: f64 = {
            let b = cell.boundary();
            let pts: Vec<(f64, f64)> = b
                .iter()
                .map(|v| ((v.lng() - c.lon) * c.cos_lat, v.lat() - c.lat))
                .collect();
            (0..pts.len())
                .map(|i| {
                    let (a, b) = (pts[i], pts[(i + 1) % pts.len()]);
                    a.0 * b.1 - a.1 * b.0
                })
                .sum::<f64>()
                .abs()
                / 2.0
        };
        let ratio = std::f64::consts::PI * c.r2 / hex_area;
        assert!((0.85..0.91).contains(&ratio), "{ratio}");
        // The shrunk polygon covers more: sample the cell's bounding box.
        assert_eq!(c.edges, 6);
        let (mut inside, mut covered) = (0, 0);
        let mut rng = Lcg(3);
        for _ in 0..100_000 {
            let p = Point {
                lat: c.lat + (rng.next() - 0.5) * 0.05,
                lon: c.lon + (rng.next() - 0.5) * 0.05 / c.cos_lat,
            };
            if direct(p, 7) == cell.to_string() {
                inside += 1;
                covered += usize::from(c.contains(p, 7));
            } else {
                assert!(!c.contains(p, 7), "{p:?} is not in {cell}");
            }
        }
        let share = covered as f64 / inside as f64;
        eprintln!("the region covers {share:.3} of the cell");
        assert!((0.96..0.99).contains(&share), "{share}");
    }
}

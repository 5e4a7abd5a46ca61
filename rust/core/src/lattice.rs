//! Cartesian lattice graphs, for Rust-side tests and benchmarks. The Python
//! package builds its own graphs (with regions and compartments) and passes
//! them in; this is the same 6-neighbour graph with reflective walls.

use crate::problem::SubvolumeGraph;

/// Index of voxel (x, y, z) with x fastest.
#[inline]
pub fn voxel_index(shape: [usize; 3], x: usize, y: usize, z: usize) -> usize {
    x + shape[0] * (y + shape[1] * z)
}

/// 6-neighbour lattice of cubes of side `h`: volume h³, coupling g = h²/h = h,
/// one transport class (0). Walls reflect (no edge leaves the box).
pub fn cubic_lattice(shape: [usize; 3], h: f64) -> SubvolumeGraph {
    let [nx, ny, nz] = shape;
    let n = nx * ny * nz;
    let mut g = SubvolumeGraph {
        volumes: vec![h * h * h; n],
        edge_offsets: Vec::with_capacity(n + 1),
        edge_targets: Vec::with_capacity(6 * n),
        edge_coupling: Vec::with_capacity(6 * n),
        edge_class: Vec::with_capacity(6 * n),
    };
    g.edge_offsets.push(0);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let mut push = |xx: usize, yy: usize, zz: usize| {
                    g.edge_targets.push(voxel_index(shape, xx, yy, zz) as u32);
                    g.edge_coupling.push(h);
                    g.edge_class.push(0);
                };
                if x > 0 {
                    push(x - 1, y, z);
                }
                if x + 1 < nx {
                    push(x + 1, y, z);
                }
                if y > 0 {
                    push(x, y - 1, z);
                }
                if y + 1 < ny {
                    push(x, y + 1, z);
                }
                if z > 0 {
                    push(x, y, z - 1);
                }
                if z + 1 < nz {
                    push(x, y, z + 1);
                }
                g.edge_offsets.push(g.edge_targets.len());
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_count_and_symmetry() {
        let shape = [4, 3, 2];
        let g = cubic_lattice(shape, 0.5);
        // Directed edges: 2 * (undirected (nx-1)ny nz + nx(ny-1)nz + nx ny(nz-1)).
        let undirected = 3 * 3 * 2 + 4 * 2 * 2 + 4 * 3;
        assert_eq!(g.n_edges(), 2 * undirected);
        for i in 0..g.n_subvolumes() {
            for e in g.edge_offsets[i]..g.edge_offsets[i + 1] {
                let j = g.edge_targets[e] as usize;
                let back = (g.edge_offsets[j]..g.edge_offsets[j + 1])
                    .filter(|&f| g.edge_targets[f] as usize == i)
                    .count();
                assert_eq!(back, 1);
            }
        }
    }
}

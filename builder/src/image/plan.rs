//! The layer plan: which packages get a layer of their own and which share
//! one, decided from the lock alone so that images with packages in common
//! share their layers.
//!
//! Packages fall into size classes (half octaves of their archive size). The
//! classes of the largest packages give a layer to each of their packages,
//! as many classes as the layer budget allows. Each smaller class is cut, in
//! name order, after every package whose name hashes to a multiple of the
//! group spread (16 on average), and each piece is one layer. A group's
//! members therefore depend only on packages of about the same size and
//! nearby names: an image with one small package more or less changes one
//! group, and its other groups are the same blobs as in the other image.

use sha2::{Digest as _, Sha256};

/// Most layers an image gets; overlay mounts fail well before 128.
pub(crate) const MAX_LAYERS: usize = 100;

/// Average number of small packages per shared layer.
const GROUP_SPREAD: u64 = 16;

/// A spread beyond which each size class is one group.
const MAX_SPREAD: u64 = 1 << 40;

/// A package as the layer plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerCandidate {
    /// The package name (unique among one platform's packages).
    pub name: String,
    /// The package's archive size, from the lock.
    pub size: u64,
}

impl LayerCandidate {
    /// The half-octave size class: `2 * floor(log2(size))`, plus one above the midpoint.
    fn size_class(&self) -> u32 {
        if self.size == 0 {
            return 0;
        }
        let octave = 63 - self.size.leading_zeros();
        let squared = u128::from(self.size) * u128::from(self.size);
        2 * octave + u32::from(squared >= 1u128 << (2 * octave + 1))
    }
}

/// Splits packages into at most `budget` layer groups (indices into
/// `packages`): the largest packages alone, largest first, then the groups of
/// smaller ones, larger classes first.
pub(crate) fn plan_layers(packages: &[LayerCandidate], budget: usize) -> Vec<Vec<usize>> {
    let budget = budget.max(1);
    let mut order: Vec<usize> = (0..packages.len()).collect();
    order.sort_by(|&a, &b| {
        packages[b]
            .size
            .cmp(&packages[a].size)
            .then_with(|| packages[a].name.cmp(&packages[b].name))
    });
    if order.len() <= budget {
        return order.into_iter().map(|i| vec![i]).collect();
    }
    let name_hashes: Vec<u64> = packages.iter().map(|p| name_hash(&p.name)).collect();
    let group =
        |members: &[usize], spread: u64| group_by_name(packages, &name_hashes, members, spread);
    // sorted by size, the packages of one class are one run of `order`
    let classes: Vec<&[usize]> = order
        .chunk_by(|&a, &b| packages[a].size_class() == packages[b].size_class())
        .collect();
    let mut spread = GROUP_SPREAD;
    while spread < MAX_SPREAD {
        // the fewest classes that, grouped, bring the layers within the budget
        for own_classes in (0..classes.len()).rev() {
            let own = classes[..own_classes].concat();
            let mut groups = Vec::new();
            for class in &classes[own_classes..] {
                groups.extend(group(class, spread));
                if own.len() + groups.len() > budget {
                    break;
                }
            }
            if own.len() + groups.len() <= budget {
                return own.into_iter().map(|i| vec![i]).chain(groups).collect();
            }
        }
        spread *= 2;
    }
    // more size classes than layers: groups across classes
    let mut spread = GROUP_SPREAD;
    while spread < MAX_SPREAD {
        let groups = group(&order, spread);
        if groups.len() <= budget {
            return groups;
        }
        spread *= 2;
    }
    vec![order]
}

/// Cuts packages, in name order, after each one whose name hash is a
/// multiple of the spread.
fn group_by_name(
    packages: &[LayerCandidate],
    name_hashes: &[u64],
    members: &[usize],
    spread: u64,
) -> Vec<Vec<usize>> {
    let mut sorted = members.to_vec();
    sorted.sort_by(|&a, &b| packages[a].name.cmp(&packages[b].name));
    let mut groups = Vec::new();
    let mut current = Vec::new();
    for i in sorted {
        current.push(i);
        if name_hashes[i].is_multiple_of(spread) {
            groups.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

/// A stable hash of a package name: the first 8 bytes of its sha256.
fn name_hash(name: &str) -> u64 {
    let hash = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(n: usize) -> Vec<LayerCandidate> {
        (0..n)
            .map(|i| LayerCandidate {
                name: format!("p{i:03}"),
                size: (i as u64 * 7919) % 1000,
            })
            .collect()
    }

    fn names(packages: &[LayerCandidate], groups: &[Vec<usize>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|&i| packages[i].name.clone()).collect())
            .collect()
    }

    #[test]
    fn size_classes_are_half_octaves() {
        let class = |size| {
            LayerCandidate {
                name: "p".into(),
                size,
            }
            .size_class()
        };
        let classes: Vec<u32> = [0, 1, 2, 3, 1024, 1448, 1449, 2047, 2048, u64::MAX]
            .into_iter()
            .map(class)
            .collect();
        assert_eq!(classes, [0, 0, 2, 3, 20, 20, 21, 21, 22, 127]);
    }

    #[test]
    fn every_package_gets_its_own_layer_within_the_budget() {
        let packages = candidates(10);
        let groups = plan_layers(&packages, 99);
        assert_eq!(groups.len(), 10);
        assert!(groups.iter().all(|g| g.len() == 1));
        assert!(groups
            .windows(2)
            .all(|w| packages[w[0][0]].size >= packages[w[1][0]].size));
    }

    #[test]
    fn small_packages_share_layers_within_the_budget() {
        let packages = candidates(250);
        let groups = plan_layers(&packages, 99);
        assert!(groups.len() <= 99, "{} layers", groups.len());
        let own: Vec<&Vec<usize>> = groups.iter().take_while(|g| g.len() == 1).collect();
        let grouped: Vec<usize> = groups[own.len()..].concat();
        assert!(own.len() > 50, "only {} packages alone", own.len());
        let smallest_own = own.iter().map(|g| packages[g[0]].size).min().unwrap();
        assert!(grouped.iter().all(|&i| packages[i].size <= smallest_own));
        let mut all: Vec<usize> = groups.concat();
        all.sort();
        assert_eq!(all, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn the_plan_does_not_depend_on_input_order() {
        let packages = candidates(180);
        let mut reversed = packages.clone();
        reversed.reverse();
        assert_eq!(
            names(&packages, &plan_layers(&packages, 99)),
            names(&reversed, &plan_layers(&reversed, 99))
        );
    }

    #[test]
    fn one_more_small_package_changes_one_group() {
        let packages = candidates(200);
        let mut more = packages.clone();
        more.push(LayerCandidate {
            name: "p150a".into(),
            size: 0,
        });
        let before = names(&packages, &plan_layers(&packages, 99));
        let after = names(&more, &plan_layers(&more, 99));
        let changed = after.iter().filter(|g| !before.contains(g)).count();
        assert_eq!(changed, 1, "{before:?}\n{after:?}");
    }

    #[test]
    fn many_packages_fit_a_small_budget() {
        let packages = candidates(900);
        for budget in [1, 2, 5, 40, 99] {
            let groups = plan_layers(&packages, budget);
            assert!(groups.len() <= budget, "{} > {budget}", groups.len());
            assert_eq!(groups.concat().len(), 900);
        }
    }
}

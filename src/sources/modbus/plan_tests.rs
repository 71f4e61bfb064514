//! Planner tests: the example register maps from FIELD-DEVICES.md, edge
//! cases, and property tests of every guarantee in the module docs.

use super::*;
use proptest::prelude::*;

fn pt(id: usize, register: RegisterKind, address: u16, count: u16) -> Point {
    Point {
        id,
        register,
        address,
        count,
        no_merge: false,
    }
}

fn spans(requests: &[ReadRequest]) -> Vec<(RegisterKind, u16, u16)> {
    requests
        .iter()
        .map(|r| (r.register, r.start, r.count))
        .collect()
}

use RegisterKind::{Coil, Discrete, Holding, Input};

#[test]
fn sdm630_input_registers() {
    let addrs = [0x00, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x34, 0x46, 0x48, 0x156];
    let points: Vec<Point> = addrs
        .iter()
        .enumerate()
        .map(|(i, &a)| pt(i, Input, a, 2))
        .collect();
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(
        spans(&plan),
        vec![
            (Input, 0, 12),
            (Input, 0x34, 2),
            (Input, 0x46, 4),
            (Input, 0x156, 2)
        ]
    );
    assert_eq!(
        plan[0].points,
        vec![(0, 0), (1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    );
    assert_eq!(plan[2].points, vec![(7, 0), (8, 2)]);
}

#[test]
fn adw300_holding_registers_bridge_small_gaps() {
    let mut points: Vec<Point> = [20, 21, 22, 26, 27, 28]
        .iter()
        .enumerate()
        .map(|(i, &a)| pt(i, Holding, a, 1))
        .collect();
    points.push(pt(6, Holding, 36, 2));
    points.push(pt(7, Holding, 62, 2));
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(spans(&plan), vec![(Holding, 20, 18), (Holding, 62, 2)]);
    let strict = PlanOptions {
        max_gap: 0,
        ..PlanOptions::default()
    };
    let plan = super::plan(&points, &strict).unwrap();
    assert_eq!(
        spans(&plan),
        vec![
            (Holding, 20, 3),
            (Holding, 26, 3),
            (Holding, 36, 2),
            (Holding, 62, 2)
        ]
    );
}

#[test]
fn kinds_never_mix_and_bits_use_bit_limit() {
    let points = vec![
        pt(0, Holding, 0, 1),
        pt(1, Input, 1, 1),
        pt(2, Coil, 2, 1),
        pt(3, Discrete, 3, 1),
        pt(4, Coil, 1500, 1),
    ];
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(
        spans(&plan),
        vec![
            (Holding, 0, 1),
            (Input, 1, 1),
            (Coil, 2, 1),
            (Coil, 1500, 1),
            (Discrete, 3, 1)
        ]
    );
    let wide = PlanOptions {
        max_gap: 2000,
        ..PlanOptions::default()
    };
    let plan = super::plan(&points, &wide).unwrap();
    assert!(plan
        .iter()
        .any(|r| (r.register, r.start, r.count) == (Coil, 2, 1499)));
    assert_eq!(Coil.function_code(), 1);
    assert_eq!(Input.function_code(), 4);
}

#[test]
fn splits_at_max_registers() {
    let points: Vec<Point> = (0..200).map(|i| pt(i, Holding, i as u16, 1)).collect();
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(spans(&plan), vec![(Holding, 0, 125), (Holding, 125, 75)]);
    let small = PlanOptions {
        max_registers: 32,
        ..PlanOptions::default()
    };
    assert_eq!(super::plan(&points, &small).unwrap().len(), 7);
}

#[test]
fn no_merge_starts_a_new_request() {
    let mut points = vec![
        pt(0, Holding, 0, 2),
        pt(1, Holding, 2, 2),
        pt(2, Holding, 4, 2),
        pt(3, Holding, 6, 2),
    ];
    points[2].no_merge = true;
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(spans(&plan), vec![(Holding, 0, 4), (Holding, 4, 4)]);
    // A same-address neighbour follows the boundary rather than precede it.
    points.push(pt(9, Holding, 4, 1));
    let plan = super::plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(plan[1].points, vec![(2, 0), (9, 0), (3, 2)]);
}

#[test]
fn overlapping_points_share_registers() {
    let points = vec![
        pt(0, Holding, 10, 2),
        pt(1, Holding, 11, 1),
        pt(2, Holding, 10, 10),
        pt(3, Holding, 12, 1),
    ];
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(spans(&plan), vec![(Holding, 10, 10)]);
    assert_eq!(plan[0].points, vec![(0, 0), (2, 0), (1, 1), (3, 2)]);
}

#[test]
fn top_of_address_space() {
    let points = vec![pt(0, Holding, 65534, 2), pt(1, Holding, 65535, 1)];
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    assert_eq!(spans(&plan), vec![(Holding, 65534, 2)]);
    let err = super::plan(&[pt(0, Holding, 65535, 2)], &PlanOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "point 0 runs past address 65535 (address 65535, count 2)"
    );
}

#[test]
fn invalid_input_is_reported() {
    let opts = PlanOptions::default();
    assert!(plan(&[], &opts).unwrap().is_empty());
    assert_eq!(
        plan(&[pt(4, Holding, 0, 0)], &opts)
            .unwrap_err()
            .to_string(),
        "point 4 has count 0"
    );
    assert_eq!(
        plan(&[pt(5, Input, 0, 126)], &opts)
            .unwrap_err()
            .to_string(),
        "point 5 needs 126 Input addresses, more than the limit of 125 per request"
    );
    assert!(plan(&[pt(5, Coil, 0, 126)], &opts).is_ok());
    assert_eq!(
        plan(&[pt(1, Holding, 0, 1), pt(1, Input, 0, 1)], &opts)
            .unwrap_err()
            .to_string(),
        "point id 1 appears more than once"
    );
    let bad = PlanOptions {
        max_registers: 126,
        ..opts
    };
    assert_eq!(
        plan(&[], &bad).unwrap_err().to_string(),
        "max_registers must be 1 to 125, got 126"
    );
    let bad = PlanOptions {
        max_bits: 0,
        ..opts
    };
    assert_eq!(
        plan(&[], &bad).unwrap_err().to_string(),
        "max_bits must be 1 to 2000, got 0"
    );
}

#[test]
fn extract_slices_and_checks() {
    let points = vec![pt(0, Holding, 100, 2), pt(1, Holding, 103, 1)];
    let plan = plan(&points, &PlanOptions::default()).unwrap();
    let regs = [0x4366, 0x0000, 0xFFFF, 0x0007];
    assert_eq!(
        extract(&plan[0], &regs, &points[0]).unwrap(),
        &[0x4366, 0x0000]
    );
    assert_eq!(extract(&plan[0], &regs, &points[1]).unwrap(), &[0x0007]);
    let err = extract(&plan[0], &regs[..3], &points[1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "reply too short for point 1: need 4 values, got 3"
    );
    let stranger = pt(7, Holding, 100, 1);
    assert_eq!(
        extract(&plan[0], &regs, &stranger).unwrap_err().to_string(),
        "point 7 is not part of this Holding request at 100"
    );
    let wrong_kind = pt(0, Input, 100, 2);
    assert!(extract(&plan[0], &regs, &wrong_kind).is_err());
    // Bits work the same way.
    let coils = vec![pt(0, Coil, 0, 1), pt(1, Coil, 5, 3)];
    let plan = super::plan(&coils, &PlanOptions::default()).unwrap();
    let bits = [true, false, false, false, false, true, true, false];
    assert_eq!(
        extract(&plan[0], &bits, &coils[1]).unwrap(),
        &[true, true, false]
    );
}

fn points_strategy() -> impl Strategy<Value = Vec<Point>> {
    let kind = proptest::sample::select(vec![Holding, Input, Coil, Discrete]);
    proptest::collection::vec(
        (kind, 0u16..400, 1u16..12, proptest::bool::weighted(0.1)),
        0..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(id, (register, address, count, no_merge))| Point {
                id,
                register,
                address,
                count,
                no_merge,
            })
            .collect()
    })
}

fn options_strategy() -> impl Strategy<Value = PlanOptions> {
    (0u16..12, 12u16..=125, 12u16..=60).prop_map(|(max_gap, max_registers, max_bits)| PlanOptions {
        max_gap,
        max_registers,
        max_bits,
    })
}

proptest! {
    #[test]
    fn plan_guarantees(points in points_strategy(), options in options_strategy()) {
        let plan = plan(&points, &options).unwrap();
        let by_id = |id: usize| points.iter().find(|p| p.id == id).unwrap();
        let mut seen = vec![0usize; points.len()];
        for r in &plan {
            prop_assert!(r.count >= 1 && r.count <= options.limit(r.register));
            let end = u32::from(r.start) + u32::from(r.count);
            let mut members: Vec<&Point> = Vec::new();
            for &(id, offset) in &r.points {
                let p = by_id(id);
                seen[id] += 1;
                prop_assert_eq!(p.register, r.register);
                prop_assert_eq!(u32::from(r.start) + u32::from(offset), u32::from(p.address));
                prop_assert!(u32::from(offset) + u32::from(p.count) <= u32::from(r.count));
                members.push(p);
            }
            // Edges are tight: start at the first point, end at the last end.
            prop_assert_eq!(members.iter().map(|p| p.address).min(), Some(r.start));
            prop_assert_eq!(members.iter().map(|p| end_of(p)).max(), Some(end));
            // No uncovered run longer than max_gap.
            members.sort_by_key(|p| p.address);
            let mut covered = u32::from(r.start);
            for p in &members {
                prop_assert!(u32::from(p.address) <= covered + u32::from(options.max_gap));
                covered = covered.max(end_of(p));
            }
            // no_merge boundaries.
            for b in points.iter().filter(|p| p.no_merge && p.register == r.register) {
                let below = members.iter().any(|p| p.address < b.address);
                let above = members.iter().any(|p| p.address >= b.address);
                prop_assert!(!(below && above), "request {:?} crosses no_merge point {:?}", r, b);
            }
            for p in members.iter().filter(|p| p.no_merge) {
                prop_assert_eq!(p.address, r.start);
            }
            // extract agrees with the offsets.
            let regs: Vec<u32> = (u32::from(r.start)..end).collect();
            for p in &members {
                let slice = extract(r, &regs, p).unwrap();
                prop_assert_eq!(slice.first().copied(), Some(u32::from(p.address)));
                prop_assert_eq!(slice.len(), usize::from(p.count));
            }
        }
        prop_assert!(seen.iter().all(|&n| n == 1), "coverage {:?}", seen);
    }

    #[test]
    fn greedy_uses_no_more_requests_than_unmerged(points in points_strategy(), options in options_strategy()) {
        let plan = plan(&points, &options).unwrap();
        prop_assert!(plan.len() <= points.len());
    }
}

//! The hash-partitioned last-change-per-key and DataFusion's window plan give the same net
//! changes on random cycles (keys touched many times, across batches, deletes and upserts).

use std::sync::Arc;

use arrow::array::{Array, AsArray, BinaryArray, Int8Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int8Type, Int64Type, Schema};
use datafusion::prelude::SessionContext;
use hvrlake::change;
use hvrlake::coalesce::{Plan, coalesce_with};

fn net(plan: Plan, batches: Vec<RecordBatch>, schema: Arc<Schema>) -> Vec<(i64, String, i8)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let out = rt
        .block_on(coalesce_with(
            &SessionContext::new(),
            schema,
            batches,
            &["k".to_string()],
            None,
            plan,
        ))
        .unwrap();
    let mut rows = Vec::new();
    for b in &out.batches {
        let k = b.column_by_name("k").unwrap().as_primitive::<Int64Type>();
        let v = b.column_by_name("v").unwrap().as_string::<i32>();
        let op = b
            .column_by_name(change::OP)
            .unwrap()
            .as_primitive::<Int8Type>();
        for r in 0..b.num_rows() {
            rows.push((k.value(r), v.value(r).to_string(), op.value(r)));
        }
    }
    rows.sort();
    rows
}

#[test]
fn hash_and_window_plans_keep_the_same_last_change_per_key() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("v", DataType::Utf8, true),
        Field::new(change::OP, DataType::Int8, false),
        Field::new(change::ORDER, DataType::Binary, false),
    ]));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for round in 0..20 {
        let mut orders: Vec<u64> = (0..600).collect();
        for i in (1..orders.len()).rev() {
            orders.swap(i, next(i as u64 + 1) as usize);
        }
        let mut batches = Vec::new();
        for chunk in orders.chunks(97) {
            let k: Vec<i64> = chunk.iter().map(|_| next(40 + round) as i64).collect();
            let v: Vec<String> = chunk.iter().map(|o| format!("v{o}")).collect();
            let op: Vec<i8> = chunk
                .iter()
                .map(|_| if next(5) == 0 { 0 } else { 1 })
                .collect();
            let order: Vec<Vec<u8>> = chunk.iter().map(|o| o.to_be_bytes().to_vec()).collect();
            batches.push(
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from(k)),
                        Arc::new(StringArray::from(v)),
                        Arc::new(Int8Array::from(op)),
                        Arc::new(BinaryArray::from_iter_values(order.iter())),
                    ],
                )
                .unwrap(),
            );
        }
        let hash = net(Plan::Hash, batches.clone(), schema.clone());
        let window = net(Plan::Window, batches.clone(), schema.clone());
        assert_eq!(hash, window, "round {round}");
        // One row per key touched, and it is the one with the highest order.
        let keys: std::collections::BTreeSet<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(hash.len(), keys.len());
        assert!(batches.iter().all(|b| b.column(0).null_count() == 0));
    }
}

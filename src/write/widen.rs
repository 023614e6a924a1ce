//! A column whose values a cycle widened (an integer column that now holds decimals, ...):
//! every data file of the table rewritten with the wider type, before the cycle commits.

use arrow::datatypes::SchemaRef;
use deltalake::DeltaTable;
use deltalake::protocol::SaveMode;

use super::writer_properties;
use crate::error::Result;
use crate::table;

/// Gives the table's columns the wider types `columns` has for them (a cycle brought values
/// that need them: [`crate::schema::types::Inference::widening`]), rewriting every data file with
/// its values cast, in one overwrite commit of the same rows. The table as it is when no type
/// differs. Columns of `columns` the table does not have yet are left to the cycle's commit.
pub async fn widen_types(table: DeltaTable, columns: &SchemaRef) -> Result<DeltaTable> {
    use datafusion::logical_expr::cast;
    use datafusion::prelude::SessionContext;
    let Some(current) = table::columns(&table)? else {
        return Ok(table);
    };
    let mut widened = Vec::new();
    let select: Vec<datafusion::prelude::Expr> = current
        .fields()
        .iter()
        .map(|f| {
            let col = crate::change::column(f.name());
            match columns.field_with_name(f.name()) {
                Ok(w) if w.data_type() != f.data_type() => {
                    widened.push(format!(
                        "{} {} -> {}",
                        f.name(),
                        f.data_type(),
                        w.data_type()
                    ));
                    cast(col, w.data_type().clone()).alias(f.name())
                }
                _ => col,
            }
        })
        .collect();
    if widened.is_empty() {
        return Ok(table);
    }
    // delta-rs's own session: its planner runs the write of the plan.
    let ctx: SessionContext = deltalake::delta_datafusion::create_session().into_inner();
    table.update_datafusion_session(&ctx.state())?;
    let provider = table.table_provider().await?;
    let df = ctx.read_table(provider)?.select(select)?;
    let partitions: Vec<String> = table.snapshot()?.metadata().partition_columns().to_vec();
    let schema = df.schema().inner().clone();
    println!(
        "hvrlake: widening column types (every data file is rewritten): {}",
        widened.join(", ")
    );
    Ok(table
        .write(Vec::new())
        .with_input_plan(df.logical_plan().clone())
        .with_session_state(std::sync::Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(deltalake::operations::write::SchemaMode::Overwrite)
        .with_partition_columns(partitions)
        .with_writer_properties(writer_properties(&schema))
        .await?)
}

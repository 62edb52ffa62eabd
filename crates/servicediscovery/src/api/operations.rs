//! GetOperation and ListOperations over the operation records every asynchronous change
//! commits with.

use flotilla_api::Ctx;
use flotilla_endpoints::cloudmap::Operation;
use flotilla_endpoints::keys;
use serde_json::{json, Value};

use super::error::{Result, SdError};
use super::input::Input;
use super::{filters, paging, shapes, store};

pub async fn get(ctx: &Ctx, input: &Input) -> Result<Value> {
    let id = input.required_str("OperationId")?;
    let (op, _) = store::get::<Operation>(ctx, &keys::operation(id))
        .await?
        .ok_or_else(|| SdError::new("OperationNotFound", format!("Operation not found: {id}")))?;
    Ok(json!({ "Operation": shapes::operation(&op) }))
}

fn date_ms(value: &str, field: &str) -> Result<i64> {
    value
        .parse::<f64>()
        .map(|s| (s * 1000.0) as i64)
        .map_err(|_| SdError::invalid(format!("{field} must be a date in epoch seconds.")))
}

pub async fn list(ctx: &Ctx, input: &Input) -> Result<Value> {
    let (start, limit) = input.paging(100)?;
    let filters = filters::parse(input, &["NAMESPACE_ID", "SERVICE_ID", "STATUS", "TYPE", "UPDATE_DATE"])?;
    let mut ops: Vec<Operation> =
        store::list::<Operation>(ctx, keys::OPERATION).await?.into_iter().map(|(o, _)| o).collect();
    for f in &filters {
        match f.name.as_str() {
            "NAMESPACE_ID" => ops.retain(|o| o.targets.get("NAMESPACE").is_some_and(|v| f.matches(v))),
            "SERVICE_ID" => ops.retain(|o| o.targets.get("SERVICE").is_some_and(|v| f.matches(v))),
            "STATUS" => ops.retain(|o| f.matches(shapes::operation_status(o.status))),
            "TYPE" => ops.retain(|o| f.matches(shapes::operation_type(o.kind))),
            _ => {
                let from = date_ms(&f.values[0], "Filters.UPDATE_DATE.Values.0")?;
                let to = date_ms(&f.values[1], "Filters.UPDATE_DATE.Values.1")?;
                ops.retain(|o| (from..=to).contains(&o.updated_at_ms));
            }
        }
    }
    ops.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    let (page, next) = paging::page(ops, start, limit);
    let items: Vec<Value> =
        page.iter().map(|o| json!({ "Id": o.id, "Status": shapes::operation_status(o.status) })).collect();
    let mut out = json!({ "Operations": items });
    if let Some(n) = next {
        out["NextToken"] = n.into();
    }
    Ok(out)
}

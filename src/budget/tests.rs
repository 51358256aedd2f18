use super::*;
use crate::api::Answer;
use crate::client::ClientConfig;
use crate::output::record::Usage;
use crate::retry::Failure;
use serde_json::json;
use std::time::Duration;

fn req(max_tokens: Option<u64>) -> Request {
    // Prompt estimate: 2 + 4 = 6 tokens.
    crate::job::test_request("m", max_tokens)
}

fn budget(cap: f64, spent: f64) -> Arc<Budget> {
    let catalog = Catalog::from_json(&json!({"data":[
        {"id":"m","pricing":{"prompt":"1","completion":"1"}},
        {"id":"free","pricing":{"prompt":"-1","completion":"-1"}}]}))
    .unwrap();
    Arc::new(Budget::new(cap, spent, catalog))
}

/// A base URL where nothing listens.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/api/v1")
}

/// A client whose lookups find nothing (nothing listens there).
fn client() -> Client {
    Client::new(&ClientConfig {
        base_url: dead_url(),
        key: None,
        timeout: Duration::from_secs(1),
        app_url: None,
        app_title: None,
        headers: Vec::new(),
    })
    .unwrap()
}

fn answered(prompt_tokens: u64, completion_tokens: u64, cost: f64) -> Attempt {
    attempt(
        Ok(Answer {
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens,
                cost: Some(cost),
                ..Usage::default()
            }),
            ..Answer::default()
        }),
        Some("gen-ok"),
    )
}

fn attempt(result: Result<Answer, Failure>, id: Option<&str>) -> Attempt {
    Attempt {
        result,
        generation_id: id.map(str::to_owned),
        latency: Duration::ZERO,
        ttft: None,
        responded: true,
    }
}

fn http(status: u16) -> Attempt {
    attempt(
        Err(Failure::Http {
            status,
            error: None,
            retry_after: None,
            limit_reset: None,
        }),
        None,
    )
}

fn reserved(b: &Budget) -> f64 {
    b.lock().reserved
}

/// The uncalibrated worst case of `req(Some(10))`: 6 estimated prompt tokens × 2 + a bound of
/// 10, at 1 USD/token, × the prior price ratio (a BYOK request's 5 % fee).
fn worst() -> f64 {
    22.0 * calibration::PRIOR_PRICE_RATIO
}

#[tokio::test]
async fn reserves_the_worst_case_and_settles_to_the_real_cost() {
    let (b, w) = (budget(55.0, 0.0), worst());
    let r1 = b.reserve(&req(Some(10))).await.unwrap();
    let r2 = b.reserve(&req(Some(10))).await.unwrap();
    assert_eq!(reserved(&b), w + w);
    r1.settle(&answered(6, 3, 2.0), &client());
    r2.settle(&answered(6, 3, 2.0), &client());
    assert_eq!((b.spent(), reserved(&b)), (4.0, 0.0));
    // 4 + 23.1 + 23.1 ≤ 55; a third would be more.
    let a = b.reserve(&req(Some(10))).await.unwrap();
    let c = b.reserve(&req(Some(10))).await.unwrap();
    a.settle(&answered(6, 3, 15.0), &client());
    c.settle(&answered(6, 3, 15.0), &client());
    // Those were billed 15 USD for 9 USD of tokens at the catalogue's price: the next worst
    // case counts that price too.
    let err = b.reserve(&req(Some(10))).await.unwrap_err();
    assert!(
        matches!(
            err,
            BudgetStop::Reached {
                spent: 34.0,
                next,
                ..
            } if next == 22.0 * (15.0 / 9.0)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn answers_calibrate_the_reservations_of_later_requests() {
    let b = budget(1e9, 0.0);
    let first = b.reserve(&req(None)).await.unwrap();
    assert_eq!(
        reserved(&b),
        (12.0 + DEFAULT_COMPLETION_BOUND as f64) * calibration::PRIOR_PRICE_RATIO
    );
    // A tokenizer that counts 1.5× the estimate; answers of up to 40 tokens, billed at the
    // catalogue's price.
    first.settle(&answered(9, 40, 49.0), &client());
    for _ in 1..calibration::WARMUP {
        b.reserve(&req(None))
            .await
            .unwrap()
            .settle(&answered(9, 10, 19.0), &client());
    }
    let next = b.reserve(&req(None)).await.unwrap();
    // ceil(6 × 1.5 × 1.1) = 10 prompt tokens, 40 × 1.25 = 50 completion tokens.
    assert_eq!(reserved(&b), 60.0);
    drop(next);
    // A model's calibration is its own.
    assert_eq!(b.lock().models.len(), 1);
}

#[tokio::test]
async fn a_refusal_before_any_generation_costs_nothing_a_server_error_its_reservation() {
    let b = budget(100.0, 0.0);
    for status in [400, 401, 402, 429] {
        b.reserve(&req(Some(10)))
            .await
            .unwrap()
            .settle(&http(status), &client());
    }
    assert_eq!(b.spent(), 0.0);
    // A 502 may come after the provider generated: counted at its worst case.
    b.reserve(&req(Some(10)))
        .await
        .unwrap()
        .settle(&http(502), &client());
    assert_eq!((b.spent(), reserved(&b)), (worst(), 0.0));
    // Answers without a cost are priced from their tokens.
    let mut tokens_only = answered(5, 5, 0.0);
    if let Ok(a) = tokens_only.result.as_mut() {
        a.usage.as_mut().unwrap().cost = None;
    }
    b.reserve(&req(Some(10)))
        .await
        .unwrap()
        .settle(&tokens_only, &client());
    assert_eq!(b.spent(), worst() + 10.0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_with_a_generation_stays_reserved_until_it_is_priced_or_given_up() {
    let b = budget(100.0, 0.0);
    let cut = attempt(
        Err(Failure::InBody {
            error: Box::default(),
        }),
        Some("gen-cut"),
    );
    b.reserve(&req(Some(10)))
        .await
        .unwrap()
        .settle(&cut, &client());
    assert_eq!((b.spent(), reserved(&b), b.lock().open), (0.0, worst(), 1));
    // A retry reserves again, on top.
    let retry = b.reserve(&req(Some(10))).await.unwrap();
    assert_eq!(reserved(&b), worst() + worst());
    drop(retry);
    // Nothing answers the lookups: after the patience, the worst case is what it cost.
    tokio::time::sleep(lookup::PATIENCE + Duration::from_secs(1)).await;
    for _ in 0..100 {
        if b.lock().open == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!((b.spent(), reserved(&b), b.lock().open), (worst(), 0.0, 0));
}

#[tokio::test]
async fn resolving_a_pending_failure_counts_the_looked_up_cost() {
    let b = budget(100.0, 0.0);
    let claim = b.reserve(&req(Some(10))).await.unwrap();
    let amount = claim.reservation.as_ref().unwrap().amount;
    std::mem::forget(claim);
    b.resolve(Pending { amount }, Some(3.0));
    assert_eq!((b.spent(), reserved(&b), b.lock().open), (3.0, 0.0, 0));
}

#[tokio::test]
async fn a_claim_never_sent_is_released() {
    let b = budget(100.0, 0.0);
    let claim = b.reserve(&req(Some(10))).await.unwrap();
    drop(claim);
    assert_eq!((b.spent(), reserved(&b), b.lock().open), (0.0, 0.0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_does_not_fit_waits_for_open_ones() {
    let b = budget(30.0, 0.0);
    let first = b.reserve(&req(Some(10))).await.unwrap();
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.reserve(&req(Some(10))).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiter.is_finished(), "must wait while the first is open");
    first.settle(&answered(6, 1, 1.0), &client());
    waiter.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_model_without_a_price_cannot_be_bounded() {
    let b = budget(20.0, 0.0);
    let mut r = req(Some(1));
    r.model = "free".into();
    assert_eq!(
        b.reserve(&r).await.unwrap_err(),
        BudgetStop::NoPrice("free".into())
    );
    r.model = "unknown".into();
    assert!(b.reserve(&r).await.is_err());
}

#[tokio::test]
async fn earlier_spend_counts() {
    let b = budget(30.0, 10.0);
    assert!(b.reserve(&req(Some(10))).await.is_err());
}

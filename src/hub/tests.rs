use super::*;
use serde_json::value::RawValue;

/// An event `note` on `global` with id `id` and payload `{}`.
pub(super) fn event(id: &str) -> Event {
    Event {
        id: EventId::parse("id", id).unwrap(),
        channel: "global".into(),
        event_type: "note".into(),
        resource_type: None,
        resource_id: None,
        agent_id: "a".into(),
        session_id: None,
        timestamp: Timestamp::parse("t", "2026-11-21T12:00:00.000000Z").unwrap(),
        payload: RawValue::from_string("{}".into()).unwrap(),
    }
}

#[test]
fn an_internal_registration_gets_events_but_is_not_counted_as_a_stream() {
    let hub = Hub::new(EventId::ZERO, 16);
    let client = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let internal = hub.subscribe_internal(StreamFilter::all());
    assert_eq!(hub.stream_count(), 1);
    assert_eq!(hub.streams_per_pattern(), vec![("*".to_owned(), 1)]);
    hub.publish(&[&event("1")]);
    assert!(internal.queue.try_recv().is_some());
    hub.unsubscribe(client.id);
    assert_eq!(hub.stream_count(), 0);
    assert!(hub.streams_per_pattern().is_empty());
    hub.unsubscribe(internal.id);
    assert_eq!(hub.stream_count(), 0);
}

#[test]
fn the_maps_give_their_room_back_once_streams_closed() {
    let hub = Hub::new(EventId::ZERO, 16);
    let ids: Vec<_> = (0..2000)
        .map(|_| {
            hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now())
                .id
        })
        .collect();
    let grown = hub.lock().subscribers.capacity();
    assert!(grown >= 2000);
    for id in ids {
        hub.unsubscribe(id);
    }
    assert!(
        hub.lock().subscribers.capacity() >= 2000,
        "a HashMap keeps its room"
    );
    hub.shrink_to_fit();
    assert!(hub.lock().subscribers.capacity() < 16);
    // Still works afterwards.
    let again = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    assert_eq!(hub.publish(&[&event("1")]), vec![1]);
    assert!(again.queue.try_recv().is_some());
}

#[test]
fn a_writer_learns_the_deliveries_of_events_the_follower_published_first() {
    let hub = Hub::new(EventId::ZERO, 16);
    let _a = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let _b = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let (one, two) = (event("1"), event("2"));
    // The follower read the commit from the log before the writer
    // published it.
    assert_eq!(hub.publish(&[&one, &two]), vec![2, 2]);
    assert_eq!(
        hub.publish_after(EventId::ZERO, &[&one, &two]),
        Some(vec![2, 2])
    );
    // Events the hub has not seen yet, after another node's: not published.
    let three = event("3");
    assert_eq!(hub.publish_after(EventId::ZERO, &[&three]), None);
    assert_eq!(
        hub.publish_after(EventId::parse("id", "2").unwrap(), &[&three]),
        Some(vec![2])
    );
}

#[test]
fn shutting_down_closes_client_streams_even_those_opened_after() {
    let hub = Hub::new(EventId::ZERO, 16);
    let before = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    let internal = hub.subscribe_internal(StreamFilter::all());
    assert!(!before.queue.is_closed());
    hub.shut_down();
    assert!(before.queue.is_closed());
    // The server's own tasks end through their shutdown signal instead.
    assert!(!internal.queue.is_closed());
    let after = hub.subscribe(StreamFilter::all(), Framing::Named, None, Timestamp::now());
    assert!(after.queue.is_closed());
}

static CALLED_ON: std::sync::Mutex<Vec<std::thread::ThreadId>> = std::sync::Mutex::new(Vec::new());

fn note_thread() {
    CALLED_ON.lock().unwrap().push(std::thread::current().id());
}

#[test]
fn a_call_for_every_worker_runs_on_each_worker_thread_from_its_relay() {
    // Two "workers": threads with a local task set, as actix's are.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (ready, mut stop) = (ready_tx.clone(), stop_rx.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, async move {
                    wake::install();
                    ready.send(std::thread::current().id()).unwrap();
                    let _ = stop.wait_for(|stopped| *stopped).await;
                });
            })
        })
        .collect();
    let ids: Vec<_> = (0..2).map(|_| ready_rx.recv().unwrap()).collect();
    assert!(wake::on_every_worker(note_thread) >= 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let called = CALLED_ON.lock().unwrap().clone();
        if ids.iter().all(|id| called.contains(id)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "called on {called:?}, not on {ids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop_tx.send(true).unwrap();
    for worker in workers {
        worker.join().unwrap();
    }
    // Each ran it once, on its own thread.
    let called = CALLED_ON.lock().unwrap().clone();
    for id in &ids {
        assert_eq!(called.iter().filter(|c| *c == id).count(), 1);
    }
}

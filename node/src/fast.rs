//! The hot path of `index.js`: plain functions over a per-thread table of writers, so an emit
//! costs no class unwrap and no String allocation for its event type and run id; and in fsync
//! mode one libuv work item per event whose completion calls one JavaScript function with the
//! event's token (index.js keeps the Promise), instead of a native Promise per event.

use crate::{js_err, Data, Hot};
use ledgerx::core::writer::SyncTicket;
use ledgerx::core::Error as CoreError;
use napi::bindgen_prelude::*;
use napi::{sys, JsValue};
use napi_derive::napi;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ptr;
use std::rc::Rc;

thread_local! {
    /// The writers of this thread's JavaScript environment, by slot number.
    static SLOTS: RefCell<Vec<Option<Rc<Hot>>>> = const { RefCell::new(Vec::new()) };
    /// The function fsync completions call: `(token, errorOrNull)`.
    static ON_SYNCED: Cell<sys::napi_ref> = const { Cell::new(ptr::null_mut()) };
}

pub(crate) fn register(hot: Rc<Hot>) -> u32 {
    SLOTS.with_borrow_mut(|s| {
        s.push(Some(hot));
        (s.len() - 1) as u32
    })
}

pub(crate) fn unregister(slot: u32) {
    SLOTS.with_borrow_mut(|s| {
        if let Some(h) = s.get_mut(slot as usize) {
            *h = None;
        }
    });
}

fn hot(slot: u32) -> Result<Rc<Hot>> {
    SLOTS
        .with_borrow(|s| s.get(slot as usize).cloned().flatten())
        .ok_or_else(|| js_err(CoreError::Closed))
}

fn check(status: sys::napi_status, what: &str) -> Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(js_err(CoreError::schema(format!(
            "{what} must be a string"
        ))))
    }
}

/// The UTF-8 of a short JS string, in `buf` when it fits (event types, run ids), else owned.
///
/// # Safety
/// `v` must be a value of `env`, in the current handle scope.
unsafe fn small_str<'a>(
    env: sys::napi_env,
    v: sys::napi_value,
    buf: &'a mut [u8; 256],
    what: &str,
) -> Result<Cow<'a, str>> {
    let mut n = 0usize;
    check(
        sys::napi_get_value_string_utf8(env, v, buf.as_mut_ptr().cast(), buf.len(), &mut n),
        what,
    )?;
    if n + 4 < buf.len() {
        // Whole (a truncation leaves fewer than 4 bytes of room); V8 wrote valid UTF-8.
        return Ok(Cow::Borrowed(
            std::str::from_utf8(&buf[..n]).unwrap_or("\u{FFFD}"),
        ));
    }
    let mut len = 0usize;
    check(
        sys::napi_get_value_string_utf8(env, v, ptr::null_mut(), 0, &mut len),
        what,
    )?;
    let mut owned = vec![0u8; len + 1];
    check(
        sys::napi_get_value_string_utf8(env, v, owned.as_mut_ptr().cast(), len + 1, &mut n),
        what,
    )?;
    owned.truncate(n);
    Ok(Cow::Owned(String::from_utf8_lossy(&owned).into_owned()))
}

/// The event type, run id (null or a string) and schema version (null or a number) of a call.
struct Head<'a> {
    event_type: Cow<'a, str>,
    run_id: Option<Cow<'a, str>>,
    version: Option<u32>,
}

/// # Safety
/// The values must come from the current call.
unsafe fn head<'a>(
    event_type: &Unknown<'_>,
    run_id: &Unknown<'_>,
    version: &Unknown<'_>,
    tb: &'a mut [u8; 256],
    rb: &'a mut [u8; 256],
) -> Result<Head<'a>> {
    let et = event_type.value();
    let event_type = small_str(et.env, et.value, tb, "event_type")?;
    let run_id = match run_id.get_type()? {
        ValueType::Null | ValueType::Undefined => None,
        _ => Some(small_str(et.env, run_id.value().value, rb, "run_id")?),
    };
    let version = match version.get_type()? {
        ValueType::Number => {
            let mut f = 0.0;
            sys::napi_get_value_double(et.env, version.value().value, &mut f);
            Some(f as u32)
        }
        _ => None,
    };
    Ok(Head {
        event_type,
        run_id,
        version,
    })
}

/// Read the call's event type, run id and version into stack buffers, then validate and write
/// the event (its JSON text): the part both emit functions share.
fn emit_now(
    h: &Hot,
    event_type: &Unknown<'_>,
    json: Unknown<'_>,
    run_id: &Unknown<'_>,
    version: &Unknown<'_>,
) -> Result<ledgerx::core::writer::Emitted> {
    let (mut tb, mut rb) = ([0u8; 256], [0u8; 256]);
    // SAFETY: all values belong to this call.
    let hd = unsafe { head(event_type, run_id, version, &mut tb, &mut rb) }?;
    h.emit_inner(
        &hd.event_type,
        Data::Json(json),
        hd.run_id.as_deref(),
        hd.version,
    )
}

/// `emitJson` of writer `slot` (group and os modes): the offset, or -(offset + 1) when the part
/// changed since the last call (then the writer's `lastFile` names it).
#[napi]
pub fn emit_json_at(
    slot: u32,
    event_type: Unknown<'_>,
    json: Unknown<'_>,
    run_id: Unknown<'_>,
    version: Unknown<'_>,
) -> Result<f64> {
    let h = hot(slot)?;
    let e = emit_now(&h, &event_type, json, &run_id, &version)?;
    if e.backpressure {
        h.inner.wait_drained();
    }
    Ok(h.offset_code(&e.pos))
}

/// The function every fsync completion calls with `(token, null)` once the event's fdatasync
/// returned, or `(token, markedErrorMessage)`.
#[napi]
pub fn set_on_synced(f: Unknown<'_>) -> Result<()> {
    let v = f.value();
    let mut r = ptr::null_mut();
    // SAFETY: a value of this call; the reference lives as long as the thread's environment.
    let status = unsafe { sys::napi_create_reference(v.env, v.value, 1, &mut r) };
    if status != sys::Status::napi_ok {
        return Err(Error::from_reason("cannot keep the fsync callback"));
    }
    let old = ON_SYNCED.replace(r);
    if !old.is_null() {
        // SAFETY: a reference this thread made earlier.
        unsafe { sys::napi_delete_reference(v.env, old) };
    }
    Ok(())
}

/// fsync mode: validate and write the event now (order fixed at the call), queue its
/// fdatasync on the libuv pool; its completion calls the `setOnSynced` function with `token`.
/// Returns the offset code as `emitJsonAt`.
#[napi]
pub fn emit_fsync_at(
    slot: u32,
    event_type: Unknown<'_>,
    json: Unknown<'_>,
    run_id: Unknown<'_>,
    version: Unknown<'_>,
    token: f64,
) -> Result<f64> {
    let h = hot(slot)?;
    let env = event_type.value().env;
    let e = emit_now(&h, &event_type, json, &run_id, &version)?;
    let code = h.offset_code(&e.pos);
    // SAFETY: env is this call's environment.
    unsafe { queue_sync(env, e.sync, token) }?;
    Ok(code)
}

struct SyncWork {
    ticket: Option<SyncTicket>,
    token: f64,
    failure: Option<String>,
    work: sys::napi_async_work,
}

unsafe fn queue_sync(env: sys::napi_env, ticket: Option<SyncTicket>, token: f64) -> Result<()> {
    let data = Box::into_raw(Box::new(SyncWork {
        ticket,
        token,
        failure: None,
        work: ptr::null_mut(),
    }));
    let mut name = ptr::null_mut();
    let mut st = sys::napi_create_string_latin1(env, c"ledgerx.fsync".as_ptr(), 13, &mut name);
    if st == sys::Status::napi_ok {
        st = sys::napi_create_async_work(
            env,
            ptr::null_mut(),
            name,
            Some(execute),
            Some(complete),
            data.cast(),
            &mut (*data).work,
        );
    }
    if st == sys::Status::napi_ok {
        st = sys::napi_queue_async_work(env, (*data).work);
    }
    if st != sys::Status::napi_ok {
        // The line is written; its fdatasync happens at the next flush or close.
        drop(Box::from_raw(data));
        return Err(Error::from_reason("cannot queue the fdatasync"));
    }
    Ok(())
}

/// On a libuv pool thread: the fdatasync.
unsafe extern "C" fn execute(_env: sys::napi_env, data: *mut std::ffi::c_void) {
    let w = &mut *data.cast::<SyncWork>();
    if let Some(t) = &w.ticket {
        if let Err(e) = t.sync() {
            w.failure = Some(js_err(e).reason.clone());
        }
    }
}

/// Back on the event loop: report to JavaScript.
unsafe extern "C" fn complete(
    env: sys::napi_env,
    status: sys::napi_status,
    data: *mut std::ffi::c_void,
) {
    let w = Box::from_raw(data.cast::<SyncWork>());
    sys::napi_delete_async_work(env, w.work);
    let failure = match (&w.failure, status == sys::Status::napi_ok) {
        (Some(f), _) => Some(f.clone()),
        (None, false) => Some("fdatasync was cancelled".to_string()),
        (None, true) => None,
    };
    let cb_ref = ON_SYNCED.get();
    let mut f = ptr::null_mut();
    if cb_ref.is_null()
        || sys::napi_get_reference_value(env, cb_ref, &mut f) != sys::Status::napi_ok
    {
        return;
    }
    let mut args = [ptr::null_mut(); 2];
    sys::napi_create_double(env, w.token, &mut args[0]);
    match failure {
        Some(m) => {
            sys::napi_create_string_utf8(env, m.as_ptr().cast(), m.len() as isize, &mut args[1]);
        }
        None => {
            sys::napi_get_null(env, &mut args[1]);
        }
    }
    let mut recv = ptr::null_mut();
    sys::napi_get_undefined(env, &mut recv);
    let mut out = ptr::null_mut();
    if sys::napi_call_function(env, recv, f, 2, args.as_ptr(), &mut out)
        == sys::Status::napi_pending_exception
    {
        let mut exc = ptr::null_mut();
        sys::napi_get_and_clear_last_exception(env, &mut exc);
        sys::napi_fatal_exception(env, exc);
    }
}

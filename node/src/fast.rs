//! The hot path of `index.js`: plain functions over a per-thread table of writers, so an emit
//! costs no class unwrap and no String allocation for its event type and run id; and in fsync
//! mode the event's token goes to the writer's fdatasync thread (`syncer.rs`), which calls one
//! JavaScript function with it once synced (index.js keeps the Promise), instead of a native
//! Promise per event.

use crate::{js_err, Data, Hot};
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

pub(crate) fn hot(slot: u32) -> Result<Rc<Hot>> {
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

fn type_of(env: sys::napi_env, v: sys::napi_value) -> sys::napi_valuetype {
    let mut t = sys::ValueType::napi_undefined;
    // SAFETY: a value of this call; on failure `t` stays undefined.
    unsafe { sys::napi_typeof(env, v, &mut t) };
    t
}

/// # Safety
/// The values must come from the current call.
unsafe fn head<'a>(
    env: sys::napi_env,
    args: &[sys::napi_value; ARGS],
    tb: &'a mut [u8; 256],
    rb: &'a mut [u8; 256],
) -> Result<Head<'a>> {
    let event_type = small_str(env, args[1], tb, "event_type")?;
    let run_id = match type_of(env, args[3]) {
        sys::ValueType::napi_null | sys::ValueType::napi_undefined => None,
        _ => Some(small_str(env, args[3], rb, "run_id")?),
    };
    let version = match type_of(env, args[4]) {
        sys::ValueType::napi_number => {
            let mut f = 0.0;
            sys::napi_get_value_double(env, args[4], &mut f);
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

/// The arguments of the two emit functions: `(slot, eventType, json, runId, version[, token])`.
const ARGS: usize = 6;

/// Read the call's slot and head, then validate and write the event (its JSON text): the part
/// both emit functions share. The head is a number from `headId` (its event type and run id
/// kept here, version null), or the event type, run id and version themselves (read into
/// stack buffers).
///
/// # Safety
/// `args` must be this call's arguments (missing ones `undefined`).
unsafe fn emit_now(
    env: sys::napi_env,
    args: &[sys::napi_value; ARGS],
    before_write: &mut dyn FnMut(&Hot) -> Result<()>,
) -> Result<(Rc<Hot>, ledgerx::core::writer::Emitted)> {
    let mut slot = 0u32;
    if sys::napi_get_value_uint32(env, args[0], &mut slot) != sys::Status::napi_ok {
        return Err(Error::from_reason("slot must be a number"));
    }
    let h = hot(slot)?;
    let json = Unknown::from_raw_unchecked(env, args[2]);
    let mut id = 0u32;
    // A number (from headId), else the event type's string (napi refuses it as a number).
    if sys::napi_get_value_uint32(env, args[1], &mut id) == sys::Status::napi_ok {
        let heads = h.heads.borrow();
        let entry = heads
            .get(id as usize)
            .ok_or_else(|| Error::from_reason("unknown head id"))?;
        let e = h.emit_head(
            &entry.event_type,
            Data::Json(json),
            entry.run_id.as_deref(),
            None,
            Some(entry),
            before_write,
        )?;
        drop(heads);
        return Ok((h, e));
    }
    let (mut tb, mut rb) = ([0u8; 256], [0u8; 256]);
    let hd = head(env, args, &mut tb, &mut rb)?;
    let e = h.emit_inner_with(
        &hd.event_type,
        Data::Json(json),
        hd.run_id.as_deref(),
        hd.version,
        before_write,
    )?;
    Ok((h, e))
}

/// A number for `(eventType, runId)` that the emit functions take in place of both (index.js
/// keeps a map, so a call does not pass and decode the two strings again). The run id is
/// checked here as by every emit; `reset` forgets the numbers given so far first.
#[napi]
pub fn head_id(slot: u32, event_type: String, run_id: Option<String>, reset: bool) -> Result<u32> {
    let h = hot(slot)?;
    ledgerx::core::writer::check_run_scope(&event_type, run_id.as_deref()).map_err(js_err)?;
    let mut heads = h
        .heads
        .try_borrow_mut()
        .map_err(|_| Error::from_reason("head table in use"))?;
    if reset {
        heads.clear();
    }
    heads.push(crate::HeadEntry::new(event_type, run_id));
    Ok((heads.len() - 1) as u32)
}

/// A plain napi function (no napi-rs wrapper: argument conversion and borrow scopes cost more
/// than the rest of the call's glue): `f(env, args)` returns a number or throws its error.
///
/// # Safety
/// Called by Node only, as a napi callback.
unsafe fn call(
    env: sys::napi_env,
    info: sys::napi_callback_info,
    f: unsafe fn(sys::napi_env, &[sys::napi_value; ARGS]) -> Result<f64>,
) -> sys::napi_value {
    let mut argc = ARGS;
    let mut args = [ptr::null_mut(); ARGS];
    let mut out = ptr::null_mut();
    let st = sys::napi_get_cb_info(
        env,
        info,
        &mut argc,
        args.as_mut_ptr(),
        ptr::null_mut(),
        ptr::null_mut(),
    );
    if st != sys::Status::napi_ok {
        return out;
    }
    for a in args.iter_mut().skip(argc) {
        sys::napi_get_undefined(env, a);
    }
    // A panic must not cross this extern "C" boundary (it would abort the process): it
    // becomes a thrown Error like any other failure.
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(env, &args)))
        .unwrap_or_else(|_| {
            Err(Error::from_reason(
                "ledgerx: internal error (panic) in emit",
            ))
        });
    match res {
        Ok(code) => {
            sys::napi_create_double(env, code, &mut out);
        }
        Err(e) => {
            let msg = std::ffi::CString::new(e.reason.replace('\0', " ")).unwrap_or_default();
            sys::napi_throw_error(env, ptr::null(), msg.as_ptr());
        }
    }
    out
}

/// Install the plain functions `emitJsonAt` and `emitFsyncAt` on the module's exports.
#[napi(module_exports)]
pub fn fast_exports(exports: Object<'_>) -> Result<()> {
    let v = exports.value();
    let fns: [(&std::ffi::CStr, sys::napi_callback); 2] = [
        (c"emitJsonAt", Some(emit_json_at)),
        (c"emitFsyncAt", Some(emit_fsync_at)),
    ];
    for (name, cb) in fns {
        let mut f = ptr::null_mut();
        // SAFETY: the module's environment and exports object, during module init.
        let st = unsafe {
            let st = sys::napi_create_function(
                v.env,
                name.as_ptr(),
                name.to_bytes().len() as isize,
                cb,
                ptr::null_mut(),
                &mut f,
            );
            if st == sys::Status::napi_ok {
                sys::napi_set_named_property(v.env, v.value, name.as_ptr(), f)
            } else {
                st
            }
        };
        if st != sys::Status::napi_ok {
            return Err(Error::from_reason("cannot export the emit functions"));
        }
    }
    Ok(())
}

/// `emitJsonAt(slot, eventType, json, runId, version)` (group and os modes): the offset, or
/// -(offset + 1) when the part changed since the last call (then the writer's `lastFile`
/// names it).
unsafe extern "C" fn emit_json_at(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    unsafe fn run(env: sys::napi_env, args: &[sys::napi_value; ARGS]) -> Result<f64> {
        let (h, e) = emit_now(env, args, &mut |_| Ok(()))?;
        if e.backpressure {
            h.inner.wait_drained();
        }
        Ok(h.offset_code(&e.pos))
    }
    call(env, info, run)
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

/// `emitFsyncAt(slot, eventType, json, runId, version, token)`: validate and write the event now
/// (order fixed at the call); its fdatasync runs on the writer's fdatasync thread (`syncer`),
/// which reports `token` to the `setOnSynced` function once an fdatasync that began after the
/// line's write() returned has succeeded (or failed). Returns the offset code as `emitJsonAt`.
unsafe extern "C" fn emit_fsync_at(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    unsafe fn run(env: sys::napi_env, args: &[sys::napi_value; ARGS]) -> Result<f64> {
        let mut token = 0.0;
        if sys::napi_get_value_double(env, args[5], &mut token) != sys::Status::napi_ok {
            return Err(Error::from_reason("token must be a number"));
        }
        // The thread is started (once) before the line is written: a failure writes nothing.
        let (h, e) = emit_now(env, args, &mut |h: &Hot| h.syncer(env).map(|_| ()))?;
        let code = h.offset_code(&e.pos);
        h.syncer(env)?.enqueue(env, token, e.sync);
        Ok(code)
    }
    call(env, info, run)
}

/// Call the `setOnSynced` function with `(token, null)` or `(token, markedErrorMessage)`; an
/// exception it throws is the process's uncaught exception.
///
/// # Safety
/// On the event loop of `env`.
pub(crate) unsafe fn report_synced(env: sys::napi_env, token: f64, failure: Option<&str>) {
    let cb_ref = ON_SYNCED.get();
    let mut f = ptr::null_mut();
    if cb_ref.is_null()
        || sys::napi_get_reference_value(env, cb_ref, &mut f) != sys::Status::napi_ok
    {
        return;
    }
    let mut args = [ptr::null_mut(); 2];
    sys::napi_create_double(env, token, &mut args[0]);
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

//! One system call per commit for SQLite's write-ahead log.
//!
//! SQLite writes each WAL frame as two `pwrite`s, the 24-byte frame header
//! and then the page, so a commit of four pages costs eight system calls.
//! This VFS is SQLite's own `unix` VFS with one change: the file handle of a
//! WAL gathers the frames a transaction appends in memory and writes them
//! with one `pwrite` when the commit frame is complete, before SQLite
//! publishes the commit in the WAL index, so no reader in this or another
//! process can see a frame that is not in the file. What an answered write
//! survives is unchanged: the write reaches the kernel before `COMMIT`
//! returns, as before, and with `synchronous=FULL` SQLite's sync of the WAL
//! writes the gathered frames out first.
//!
//! Only the pattern SQLite's WAL uses is gathered: the WAL header at offset
//! 0, then frame headers each followed by their page, each contiguous with
//! the last. Any other write (a rewritten checksum, an overwritten frame, a
//! write split at a sync point) first writes out what was gathered and then
//! goes to the file as it came. Reads, syncs, truncation, the size and
//! closing all write out what was gathered first. A commit frame (a frame
//! header whose "database size" field is not zero) is written out together
//! with its page, so it can never stay in memory.
//!
//! Files other than WALs (the database, the shared-memory index, temporary
//! files) are opened by the `unix` VFS itself and never pass through here.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use libsqlite3_sys as ffi;

/// The name the VFS is registered under (as the default).
const NAME: &std::ffi::CStr = c"switchboard-unix";

/// The size of SQLite's WAL header and of each frame header (file format).
const WAL_HEADER: c_int = 32;
const FRAME_HEADER: c_int = 24;

/// The most the `unix` VFS writes in one call (it masks the length with
/// `0x1ffff`): a frame that would take the gathered bytes past it writes
/// them out first (a transaction that writes a large file).
const MAX_WRITE: usize = 0x1ffff;

/// The `unix` VFS, kept as a `usize` so that it can live in a static.
static REAL: OnceLock<Option<usize>> = OnceLock::new();

/// Registers the VFS as SQLite's default, once per process, before the
/// first connection opens. Without a `unix` VFS (not a Unix build) SQLite's
/// default stays.
pub(crate) fn install() {
    REAL.get_or_init(|| {
        // SAFETY: sqlite3_vfs_find and sqlite3_vfs_register are thread-safe
        // (they initialize SQLite and take its mutex). The registered
        // struct is leaked, so it lives as long as the process, as SQLite
        // requires.
        unsafe {
            let real = ffi::sqlite3_vfs_find(c"unix".as_ptr());
            if real.is_null() {
                return None;
            }
            let mut vfs = std::ptr::read(real);
            vfs.zName = NAME.as_ptr();
            vfs.pNext = std::ptr::null_mut();
            vfs.szOsFile = (std::mem::size_of::<WalFile>() as c_int) + (*real).szOsFile;
            vfs.xOpen = Some(open);
            let vfs = Box::into_raw(Box::new(vfs));
            if ffi::sqlite3_vfs_register(vfs, 1) != ffi::SQLITE_OK {
                return None;
            }
            Some(real as usize)
        }
    });
}

/// A WAL's file handle: SQLite's part first, then the `unix` VFS's handle,
/// which lives in the same allocation right after this struct.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    gathered: *mut Gathered,
}

/// Frames appended since the last write to the file.
#[derive(Default)]
struct Gathered {
    /// Where `bytes` begins in the file.
    offset: i64,
    bytes: Vec<u8>,
    /// What the next gathered write must be.
    next: Next,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A frame header (or, at offset 0, the WAL header).
    #[default]
    Header,
    /// The page of the frame whose header came last.
    Page { commit: bool },
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The `unix` VFS's handle inside one of ours, and its methods.
unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let real = (*(file as *mut WalFile)).real;
    (real, &*(*real).pMethods)
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Some(real_vfs)) = REAL.get() else {
        return ffi::SQLITE_ERROR;
    };
    let real_vfs = *real_vfs as *mut ffi::sqlite3_vfs;
    let real_open = (*real_vfs).xOpen.expect("the unix VFS opens files");
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Our handle is larger than the unix VFS's: it fills it as its own.
        return real_open(real_vfs, name, file, flags, out_flags);
    }
    let wal = file as *mut WalFile;
    let inner = (file as *mut u8).add(std::mem::size_of::<WalFile>()) as *mut ffi::sqlite3_file;
    (*inner).pMethods = std::ptr::null();
    let rc = real_open(real_vfs, name, inner, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        if !(*inner).pMethods.is_null() {
            ((*(*inner).pMethods).xClose.expect("xClose"))(inner);
        }
        (*wal).base.pMethods = std::ptr::null();
        return rc;
    }
    (*wal).real = inner;
    (*wal).gathered = Box::into_raw(Box::default());
    (*wal).base.pMethods = &WAL_METHODS;
    ffi::SQLITE_OK
}

/// Writes out what was gathered, as one `pwrite`.
unsafe fn write_out(file: *mut ffi::sqlite3_file) -> c_int {
    let gathered = &mut *(*(file as *mut WalFile)).gathered;
    if gathered.bytes.is_empty() {
        return ffi::SQLITE_OK;
    }
    let (real, methods) = real(file);
    let rc = (methods.xWrite.expect("xWrite"))(
        real,
        gathered.bytes.as_ptr() as *const c_void,
        gathered.bytes.len() as c_int,
        gathered.offset,
    );
    gathered.bytes.clear();
    rc
}

/// Writes out what was gathered, then calls the `unix` VFS's handle.
unsafe fn then(
    file: *mut ffi::sqlite3_file,
    call: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    let rc = write_out(file);
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    let (real, methods) = real(file);
    call(real, methods)
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let gathered = &mut *(*(file as *mut WalFile)).gathered;
    let bytes = std::slice::from_raw_parts(data as *const u8, amount.max(0) as usize);
    let end = gathered.offset + gathered.bytes.len() as i64;
    let follows = gathered.bytes.is_empty() || offset == end;
    let next = match gathered.next {
        Next::Header if amount == WAL_HEADER && offset == 0 => Some(Next::Header),
        // The frame header's second field is the database size after a
        // commit, zero in every other frame.
        Next::Header if amount == FRAME_HEADER => Some(Next::Page {
            commit: bytes[4..8] != [0; 4],
        }),
        Next::Page { .. } if follows => Some(Next::Header),
        _ => None,
    };
    let Some(next) = next else {
        // Not the WAL's append pattern: the file gets it as it came.
        gathered.next = Next::Header;
        return then(file, |real, methods| {
            (methods.xWrite.expect("xWrite"))(real, data, amount, offset)
        });
    };
    if !follows || gathered.bytes.len() + bytes.len() > MAX_WRITE {
        let rc = write_out(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let gathered = &mut *(*(file as *mut WalFile)).gathered;
    if gathered.bytes.is_empty() {
        gathered.offset = offset;
    }
    let completes_commit = gathered.next == Next::Page { commit: true };
    gathered.bytes.extend_from_slice(bytes);
    gathered.next = next;
    if completes_commit {
        return write_out(file);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let written = write_out(file);
    let (real, methods) = real(file);
    let rc = (methods.xClose.expect("xClose"))(real);
    let wal = file as *mut WalFile;
    drop(Box::from_raw((*wal).gathered));
    (*wal).gathered = std::ptr::null_mut();
    (*wal).base.pMethods = std::ptr::null();
    if written != ffi::SQLITE_OK {
        written
    } else {
        rc
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    then(file, |real, methods| {
        (methods.xRead.expect("xRead"))(real, data, amount, offset)
    })
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    then(file, |real, methods| {
        (methods.xTruncate.expect("xTruncate"))(real, size)
    })
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    then(file, |real, methods| {
        (methods.xSync.expect("xSync"))(real, flags)
    })
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    then(file, |real, methods| {
        (methods.xFileSize.expect("xFileSize"))(real, size)
    })
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, methods) = real(file);
    (methods.xLock.expect("xLock"))(real, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    let (real, methods) = real(file);
    (methods.xUnlock.expect("xUnlock"))(real, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let (real, methods) = real(file);
    (methods.xCheckReservedLock.expect("xCheckReservedLock"))(real, out)
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    then(file, |real, methods| {
        (methods.xFileControl.expect("xFileControl"))(real, op, arg)
    })
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods) = real(file);
    (methods.xSectorSize.expect("xSectorSize"))(real)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (real, methods) = real(file);
    (methods
        .xDeviceCharacteristics
        .expect("xDeviceCharacteristics"))(real)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::{QueryableByName, RunQueryDsl};

    use crate::store::{DatabaseUrl, DbConn};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn count(conn: &mut DbConn) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM t")
            .get_result::<Count>(conn)
            .unwrap()
            .n
    }

    /// Write system calls this thread has made (pwrite included).
    fn writes_so_far() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("syscw:")).unwrap();
        line[6..].trim().parse().unwrap()
    }

    fn insert(conn: &mut DbConn, rows: usize, size: usize) {
        conn.batch_execute(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) \
             INSERT INTO t (body) SELECT randomblob({size}) FROM n"
        ))
        .unwrap();
    }

    #[test]
    fn a_commit_is_one_write_and_every_reader_sees_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::parse(dir.path().join("w.db").to_str().unwrap()).unwrap();
        let mut writer = url.connect().unwrap();
        let mut reader = url.connect().unwrap();
        writer
            .batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
            .unwrap();

        // 60 pages of 4 KiB in one transaction: 120 pwrites unless gathered.
        let before = writes_so_far();
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        for _ in 0..60 {
            insert(&mut writer, 1, 3000);
        }
        writer.batch_execute("COMMIT").unwrap();
        let writes = writes_so_far() - before;
        assert!(writes <= 4, "{writes} write calls for one commit");
        assert_eq!(count(&mut reader), 60);

        // Small commits, each seen by the other connection at once.
        for i in 1..=50 {
            insert(&mut writer, 1, 100);
            assert_eq!(count(&mut reader), 60 + i);
        }

        // More than one write can take in one transaction, then one that
        // rolls back (its frames are written but never committed).
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        for _ in 0..120 {
            insert(&mut writer, 1, 3000);
        }
        writer.batch_execute("COMMIT").unwrap();
        assert_eq!(count(&mut reader), 230);
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        insert(&mut writer, 40, 3000);
        writer.batch_execute("ROLLBACK").unwrap();
        insert(&mut writer, 1, 10);
        assert_eq!(count(&mut reader), 231);

        // A checkpoint reads the frames back from the WAL into the database.
        writer
            .batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        insert(&mut writer, 1, 10);
        drop(writer);
        drop(reader);
        let mut again = url.connect().unwrap();
        assert_eq!(count(&mut again), 232);
        #[derive(QueryableByName)]
        struct Check {
            #[diesel(sql_type = diesel::sql_types::Text)]
            integrity_check: String,
        }
        let check = diesel::sql_query("PRAGMA integrity_check")
            .get_result::<Check>(&mut again)
            .unwrap();
        assert_eq!(check.integrity_check, "ok");
    }
}

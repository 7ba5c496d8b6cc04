//! memcached's text protocol served over a UART: the connection driver
//! (`tickcache::memcached::Driver`) and the engine on a fixed `Table`, on the MPS2-AN386
//! board's CMSDK UART0. Run by `memcached.sh`, which gives QEMU's serial port a local TCP
//! socket and talks to it with pymemcache:
//!
//! ```text
//! cargo build --release --no-default-features --bin memcached
//! qemu-system-arm -machine mps2-an386 -cpu cortex-m4 -display none -monitor none \
//!     -semihosting-config enable=on,target=native \
//!     -serial tcp:127.0.0.1:21413,server=on,wait=off -kernel target/thumbv7em-none-eabihf/release/memcached
//! ```
//!
//! Memory, all fixed: the table (64 items of up to 1,024 data bytes under keys of up to 250
//! bytes), the engine's working buffer of one item, an input buffer of 4,096 bytes (a line of
//! up to 2,048 bytes and a data block of up to 1,024) and a reply buffer of 1,536 bytes
//! (a `heapless::Vec`, sent after every step; the longest reply, a `VALUE` block with a
//! 250-byte key, 1,024 data bytes and `END`, is 1,325 bytes). The MPS2 board only: the
//! micro:bit's 16 KiB of RAM cannot hold the table.
//!
//! A UART has no connections to close, so the firmware keeps the stream in step itself:
//! - a line longer than 2,048 bytes is answered `CLIENT_ERROR line too long` and dropped up
//!   to its newline;
//! - a data block not ending in CR LF (a byte lost on the wire, followed by more bytes) is
//!   answered `CLIENT_ERROR bad data chunk`, as memcached does, and reading goes on after it;
//! - a command left incomplete for a second ([`STALL_TICKS`]) (a byte lost and nothing sent after it, a
//!   client gone mid-command) is dropped and answered [`STALLED`];
//! - `quit` starts a fresh connection state.

#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use tickcache::memcached::{Driver, Event, LongLines, Memcached, Now};
use tickcache::Table;

/// Largest item data, in bytes.
const ITEM_MAX: usize = 1024;
/// Longest command line, newline included.
const LINE_MAX: usize = 2048;
/// The connection's input buffer: a longest line and a largest data block fit.
const INPUT: usize = 4096;
/// The reply buffer.
const OUTPUT: usize = 1536;
/// Items the table holds (least recently used evicted beyond).
const ITEMS: usize = 64;
/// A command incomplete this long (hundredths of a second without a byte) is dropped.
const STALL_TICKS: u64 = 100;
/// The reply to a dropped incomplete command.
const STALLED: &[u8] = b"CLIENT_ERROR incomplete command dropped\r\n";

/// The board's core clock: 25 MHz.
const CORE_HZ: u32 = 25_000_000;

type Engine = Memcached<Table<ITEMS, 250, { ITEM_MAX + 12 }>, { ITEM_MAX + 12 }>;

/// The FPGA IO block's 100 Hz counter (MPS2 boards): the cache's clock, in hundredths of
/// a second. QEMU derives it from its virtual clock at each read, so it keeps time even
/// when the host is too busy to deliver every timer interrupt.
const CLK100HZ: usize = 0x4002_8014;

/// Reads a 32-bit device register.
fn read_reg(addr: usize) -> u32 {
    // SAFETY: `addr` is a 32-bit register of this board's memory map (CMSDK UART0 or the
    // FPGA IO block): an aligned device address, read with a volatile access. Memory-mapped
    // IO has no safe access in Rust, and no PAC covers this board.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// The CMSDK APB UART (ARM DDI 0479): data, state, control and baud divider registers.
struct Uart {
    base: usize,
}

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

impl Uart {
    /// UART0 of the MPS2-AN385/AN386 boards.
    const UART0: usize = 0x4000_4000;

    /// Enables the transmitter and receiver at 115,200 baud (QEMU ignores the rate but
    /// refuses a divider below 16).
    fn new(base: usize) -> Self {
        let u = Uart { base };
        u.write_reg(BAUDDIV, CORE_HZ / 115_200);
        u.write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        u
    }

    fn read_reg(&self, offset: usize) -> u32 {
        read_reg(self.base + offset)
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: `base + offset` is a 32-bit register of the CMSDK UART (data, control or
        // baud divider), an aligned device address written with a volatile access; these
        // registers only affect the UART.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// A received byte, if one is waiting.
    fn try_read(&self) -> Option<u8> {
        (self.read_reg(STATE) & STATE_RX_FULL != 0).then(|| self.read_reg(DATA) as u8)
    }

    /// Sends `bytes`, waiting while the transmitter is full.
    fn write_all(&self, bytes: &[u8]) {
        for &b in bytes {
            while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
            self.write_reg(DATA, u32::from(b));
        }
    }
}

fn new_driver() -> Driver<[u8; INPUT]> {
    Driver::new([0; INPUT], ITEM_MAX, LINE_MAX).long_lines(LongLines::Resync)
}

#[entry]
fn main() -> ! {
    let uart = Uart::new(Uart::UART0);
    let mut engine = Engine::new(Table::new(), ITEM_MAX, 0);
    let mut driver = new_driver();
    let mut out: heapless::Vec<u8, OUTPUT> = heapless::Vec::new();
    hprintln!(
        "memcached on UART0: {} items of up to {} bytes, lines up to {} bytes",
        ITEMS,
        driver.item_max(),
        LINE_MAX
    );

    // Hundredths of a second since boot, widened to 64 bits.
    let mut ticks: u64 = 0;
    let mut last_clock = read_reg(CLK100HZ);
    let mut last_byte: u64 = 0;
    loop {
        let c = read_reg(CLK100HZ);
        ticks += u64::from(c.wrapping_sub(last_clock));
        last_clock = c;

        // Take bytes while they come; parse once the line has been quiet for a moment (or
        // the buffer is full), so a command arriving byte by byte is not reparsed per byte.
        let space = driver.space();
        let mut n = 0;
        let mut quiet = 0u32;
        while n < space.len() && quiet < 20_000 {
            match uart.try_read() {
                Some(b) => {
                    space[n] = b;
                    n += 1;
                    quiet = 0;
                }
                None => quiet += 1,
            }
        }
        driver.fill(n);
        if n > 0 {
            last_byte = ticks;
        }

        let now = Now {
            ticks,
            ticks_per_second: 100,
            unix: 0,
        };
        loop {
            let step = driver.step(&mut engine, &now, &mut out);
            match step {
                Ok(event) => {
                    uart.write_all(&out);
                    out.clear();
                    match event {
                        Event::Need => break,
                        Event::Progress => {}
                        Event::Close => {
                            driver = new_driver();
                            break;
                        }
                    }
                }
                // A reply larger than the buffer: its start is dropped, and the next step
                // sends an error line in its place.
                Err(_) => out.clear(),
            }
        }

        if n == 0 && driver.partial() && ticks - last_byte >= STALL_TICKS && driver.reset() {
            uart.write_all(STALLED);
        }
    }
}

fn fail(why: &str) -> ! {
    hprintln!("memcached firmware: {}", why);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    fail("panic")
}

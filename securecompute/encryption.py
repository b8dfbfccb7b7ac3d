"""Fast Paillier encryption compatible with ``phe``: Damgard-Jurik-Nielsen short-exponent obfuscators.

phe encrypts ``m`` as ``(1 + m n) * r^n mod n^2`` with a fresh ``r < n``: a full-length exponentiation
(about 40 ms at 3072 bits). Damgard, Jurik and Nielsen (2010, "A generalization of Paillier's public-key
system with applications to electronic voting", Int. J. Inf. Secur. 9(6), Section 4.2) replace ``r^n`` by
``h_s^a`` where ``h = -x^2 mod n`` for a random ``x``, ``h_s = h^n mod n^2`` and ``a`` is a random short
exponent. ``h_s^a = (h^a)^n`` is an ``n``-th residue, so the ciphertext has exactly the shape phe's private
key decrypts. Because the base is fixed, ``h_s^a`` comes from precomputed tables: with ``w``-bit windows,
row ``i`` holds ``h_s^(d * 2^(w i))`` for every digit ``d``, and one obfuscator is the product of one entry
per row, ``ceil(l / w) - 1`` modular multiplications and no squaring at all.

Exponent length ``l`` (the security argument)
---------------------------------------------
``l = 2 * kappa`` bits, where ``kappa`` is the security strength of the modulus from NIST SP 800-57 Part 1
Rev. 5, Table 2: 224 bits at 2048-bit moduli (kappa = 112) and 256 bits at 3072 (kappa = 128).

* Semantic security rests on DCR plus the assumption DJN state in Section 4.2: ``h_s^a`` with a short
  random ``a`` cannot be told from a random element of ``<h_s>`` (the short-exponent discrete-logarithm
  assumption; Koshiba and Kurosawa, PKC 2004, show short-exponent DDH follows from DDH plus DLSE).
* The best known attack on a short exponent is Pollard's lambda (kangaroo) method or its parallel
  version by van Oorschot and Wiener (J. Cryptology 12, 1999): about ``2^(l/2)`` group operations, i.e.
  ``2^kappa`` for ``l = 2 kappa``. Van Oorschot and Wiener (EUROCRYPT 1996, "On Diffie-Hellman key
  agreement with short exponents") speed this up by combining it with Pohlig-Hellman on the smooth part of
  the group order; here the order of ``Z*_(n^2)`` is unknown without factoring ``n``, so that shortcut is
  unavailable. Attacking many ciphertexts at once amortises the total cost (about ``sqrt(M 2^l)`` for all
  ``M``) but does not make the first exponent cheaper than about ``2^(l/2)`` (Kuhn and Struik, SAC 2001).
* The same ``2 * kappa`` rule is what NIST allows for Diffie-Hellman private keys in the safe-prime
  groups (SP 800-56A Rev. 3, Section 5.6.1.1: ``N >= 2s``), the setting of van Oorschot-Wiener's analysis.

SecretFlow HEU's ZPaillier uses ``l = |n| / 2`` (1536 bits at 3072), DJN's conservative default; the
argument above is why 256 bits keep the 128-bit level that a 3072-bit modulus offers in the first place.
Negative plaintexts are encoded as ``n + m``, as phe does, so phe decodes them.

Window size: 9 bits minimises building the table plus 3,000 encryptions (:func:`best_window_bits`); the
table then holds about 14,800 entries (11 MB at 3072 bits). There is no background pool of obfuscators:
on one core a pool only does the same multiplications earlier, which a cold-start measure counts anyway.

The Jacobi symbol (why the obfuscator has a second factor)
----------------------------------------------------------
Anyone can compute the Jacobi symbol ``(c | n)`` of a ciphertext: ``c = o (1 + m n)`` gives ``c = o mod n``,
and for an ``n``-th residue ``o = r^n`` the symbol is ``(r | n)^n = (r | n)`` (``n`` is odd). phe's ``r``
is uniform, so its ciphertexts show +1 or -1 with probability 1/2 each. ``h = -x^2`` has ``(h | n) =
(-1 | n)``, which is +1 for our moduli (``p = q = 3 mod 4`` make ``n = 1 mod 4``), so every ``h_s^a``
showed +1: the symbol never depended on the plaintext, but it told our ciphertexts from phe's at a glance.

So each encryptor also fixes a random ``y`` with ``(y | n) = -1`` and ``y_s = y^n mod n^2`` (nothing
secret, like ``h``), and an obfuscator is ``y_s^b h_s^a`` with a fresh uniform bit ``b``.
Why the distribution and the security argument still hold:

* The ``n``-th residues mod ``n^2`` form a group ``N`` (isomorphic to ``Z*_n`` by ``r -> r^n``) made of
  the index-2 subgroup ``N+`` of symbol +1, where ``h_s`` lives, and its coset ``y_s N+`` of symbol -1.
  phe's ``r^n`` is uniform on ``N``. If ``h_s^a`` is uniform on ``N+`` (exactly so for a full-length
  ``a`` when ``-x^2`` generates the symbol-+1 units, which are cyclic for DJN-admissible moduli), then
  ``y_s^b h_s^a`` with an independent fair bit is uniform on ``N``: phe's distribution, symbol included.
* With a short ``a``, DJN's assumption is that ``h_s^a`` cannot be told from such a uniform element of
  ``N+``. Multiplying by ``y_s^b`` is a public map anyone can apply with their own coin, so a distinguisher
  of the new obfuscators from phe's ``r^n`` would be one of ``h_s^a`` from uniform on ``N+``: no new
  assumption, and semantic security still rests on DCR plus DLSE as above.

Cost: the bit is folded into the table. Row 0 exists twice, plain and multiplied by ``y_s`` (512 more
entries, 0.4 MB at 3072 bits), and one extra random bit picks the copy: no multiplication is added per
encryption. At 3072 bits on the build machine ``obfuscator()`` takes 313 us before and after (median of
15 interleaved rounds of 1,000); building the tables takes one exponentiation more (``y^n``), about 30 ms.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import gmpy2
import phe

from securecompute.errors import PlaintextOverflowError
from securecompute.keys import check_key_bits, security_bits
from securecompute.paillier import encrypted_number, modulus

# Each encryptor's table is a few MB (11 MB at 3072 bits with 9-bit windows): keep the current key and
# the one being rotated out, with room to spare.
_CACHE_SIZE = 4
_cache: OrderedDict[int, FastEncryptor] = OrderedDict()
_cache_lock = threading.Lock()


def obfuscator_exponent_bits(modulus_bits: int) -> int:
    """``2 * kappa`` (see the module docstring): 224 at 2048 bits, 256 at 3072."""
    return 2 * security_bits(modulus_bits)


def best_window_bits(exponent_bits: int, expected_encryptions: int) -> int:
    """The window that minimises table building plus ``expected_encryptions`` encryptions.

    Cost in modular multiplications: building ``rows * 2^w`` entries plus ``rows - 1`` per encryption,
    with ``rows = ceil(l / w)``. For 3,000 encryptions the minimum is ``w = 9`` at 224 and 256 bits.
    """

    def cost(window: int) -> int:
        rows = -(-exponent_bits // window)
        return rows * (1 << window) + expected_encryptions * (rows - 1)

    return min(range(4, 15), key=cost)


class FastEncryptor:
    """Encrypts integers under a phe public key with table-driven DJN obfuscators.

    Thread-safe once built: the tables are read-only. Use :func:`fast_encryptor` to share one per key.
    """

    def __init__(
        self, public_key: phe.PaillierPublicKey, *, window_bits: int | None = None, expected_encryptions: int = 3000
    ) -> None:
        n = gmpy2.mpz(modulus(public_key))
        check_key_bits(n.bit_length())
        self.public_key = public_key
        self.exponent_bits = obfuscator_exponent_bits(n.bit_length())
        self.window_bits = window_bits or best_window_bits(self.exponent_bits, expected_encryptions)
        self._n = n
        self._nsquare = n * n
        self._max_int = int(public_key.max_int)
        rows = _fixed_base_rows(_random_base(n, self._nsquare), self._nsquare, self.exponent_bits, self.window_bits)
        flip = _jacobi_flip(n, self._nsquare)
        # Row 0 plain and times y_s: the obfuscator's random bit b picks one (module docstring).
        self._first_rows = (rows[0], [entry * flip % self._nsquare for entry in rows[0]])
        self._rows = rows[1:]
        self._mask = (1 << self.window_bits) - 1

    def obfuscator(self) -> Any:
        """A fresh ``y_s^b h_s^a mod n^2`` with ``a`` uniform in ``[0, 2^l)`` and ``b`` a fair bit (an
        encryption of 0 whose Jacobi symbol is +1 or -1 with probability 1/2, as phe's ``r^n``)."""
        draw = secrets.randbits(self.exponent_bits + 1)
        mask, window, nsquare = self._mask, self.window_bits, self._nsquare
        exponent = draw >> 1
        accumulator = self._first_rows[draw & 1][exponent & mask]
        for row in self._rows:
            exponent >>= window
            accumulator = accumulator * row[exponent & mask] % nsquare
        return accumulator

    def encrypt_residue(self, residue: int) -> int:
        """The raw ciphertext of ``residue`` (``0 <= residue < n``)."""
        if not 0 <= residue < self._n:
            raise PlaintextOverflowError("a raw plaintext must satisfy 0 <= m < n")
        obfuscator = self.obfuscator()
        if residue == 0:
            return int(obfuscator)
        # (1 + m n) * o = o + n * (m o mod n)  (mod n^2): one short reduction instead of a full product.
        ciphertext = obfuscator + self._n * (residue * obfuscator % self._n)
        if ciphertext >= self._nsquare:
            ciphertext -= self._nsquare
        return int(ciphertext)

    def encrypt(self, value: int) -> phe.EncryptedNumber:
        """Encrypt a signed integer exactly as phe encodes it (exponent 0); phe's private key decrypts it."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"only integers can be encrypted, got {type(value).__name__}")
        if abs(value) > self._max_int:
            raise PlaintextOverflowError(f"|{value}| exceeds the largest integer the key encodes (n // 3 - 1)")
        return encrypted_number(self.public_key, self.encrypt_residue(value % int(self._n)), obfuscated=True)

    def encrypt_vector(self, values: Iterable[int]) -> list[phe.EncryptedNumber]:
        return [self.encrypt(value) for value in values]


def fast_encryptor(public_key: phe.PaillierPublicKey) -> FastEncryptor:
    """The process-wide :class:`FastEncryptor` for ``public_key`` (built on first use, cached by ``n``)."""
    n = modulus(public_key)
    with _cache_lock:
        encryptor = _cache.get(n)
        if encryptor is None:
            encryptor = FastEncryptor(public_key)
            _cache[n] = encryptor
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(n)
        return encryptor


def _random_base(n: Any, nsquare: Any) -> Any:
    """``h_s = (-x^2)^n mod n^2`` for a random unit ``x`` (DJN 2010, Section 4.2)."""
    while True:
        x = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.gcd(x, n) == 1:
            return gmpy2.powmod(n - x * x % n, n, nsquare)


def _jacobi_flip(n: Any, nsquare: Any) -> Any:
    """``y_s = y^n mod n^2`` for a random unit ``y`` with Jacobi symbol ``(y | n) = -1``; half the units
    qualify, so this takes two tries on average."""
    while True:
        y = gmpy2.mpz(secrets.randbelow(int(n) - 2) + 2)
        if gmpy2.jacobi(y, n) == -1:
            return gmpy2.powmod(y, n, nsquare)


def _fixed_base_rows(base: Any, nsquare: Any, exponent_bits: int, window_bits: int) -> list[list[Any]]:
    """``rows[i][d] = base^(d * 2^(w i)) mod n^2``; the last row only covers the exponent's top bits."""
    rows: list[list[Any]] = []
    for start in range(0, exponent_bits, window_bits):
        size = 1 << min(window_bits, exponent_bits - start)
        row = [gmpy2.mpz(1), base]
        power = base
        for _ in range(2, size):
            power = power * base % nsquare
            row.append(power)
        rows.append(row)
        base = power * base % nsquare
    return rows

package admin

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Password hashes, as --user gives them: "pbkdf2-sha256$<iterations>$<salt>$<hash>", the
// salt and hash in standard base64. PBKDF2 with SHA-256 is in the standard library and is
// what OWASP recommends at 600,000 iterations; hashes made elsewhere with fewer (down to
// minHashIterations) are accepted, with a warning at start-up.
const (
	hashScheme        = "pbkdf2-sha256"
	hashIterations    = 600_000
	minHashIterations = 10_000
	// maxHashIterations keeps one login from costing the admin seconds of CPU.
	maxHashIterations = 10_000_000
	hashSaltBytes     = 16
	hashKeyBytes      = 32
)

// HashPassword hashes password for --user, with a random salt and 600,000 iterations.
func HashPassword(password string) (string, error) {
	return hashPassword(password, hashIterations)
}

func hashPassword(password string, iterations int) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	salt := make([]byte, hashSaltBytes)
	_, _ = rand.Read(salt) // never fails (crypto/rand)
	key, err := pbkdf2.Key(sha256.New, password, salt, iterations, hashKeyBytes)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iterations,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(key)), nil
}

// passwordHash is a parsed hash.
type passwordHash struct {
	iterations int
	salt, key  []byte
}

// parseHash reads a hash, without saying anything of its content in its errors.
func parseHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return passwordHash{}, fmt.Errorf("want %s$<iterations>$<salt base64>$<hash base64> (nsqadmin --hash-password makes one)", hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < minHashIterations || iter > maxHashIterations {
		return passwordHash{}, fmt.Errorf("the iterations must be a number from %d to %d", minHashIterations, maxHashIterations)
	}
	salt, err1 := decodeBase64(parts[2])
	key, err2 := decodeBase64(parts[3])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(key) < 16 {
		return passwordHash{}, errors.New("the salt (8 bytes or more) and the hash (16 or more) must be base64")
	}
	return passwordHash{iterations: iter, salt: salt, key: key}, nil
}

// decodeBase64 accepts standard base64 with or without padding.
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// matches reports whether password hashes to h, comparing in constant time.
func (h passwordHash) matches(password string) bool {
	key, err := pbkdf2.Key(sha256.New, password, h.salt, h.iterations, len(h.key))
	return err == nil && subtle.ConstantTimeCompare(key, h.key) == 1
}

// parseUser reads one --user: "name:hash".
func parseUser(s string) (string, passwordHash, error) {
	name, hash, ok := strings.Cut(s, ":")
	if !ok || name == "" || strings.TrimSpace(name) != name {
		return "", passwordHash{}, errors.New(`want name:hash, with a name and no spaces around it`)
	}
	h, err := parseHash(hash)
	if err != nil {
		return "", passwordHash{}, fmt.Errorf("user %q: %w", name, err)
	}
	return name, h, nil
}

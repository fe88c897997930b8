package sessions

import "context"

// DeleteByIdPSessionOfSubject implements Store. Each session is checked
// and removed under its shard's lock, so a session that does not belong
// to subject is never removed, whatever its sid.
func (m *Memory) DeleteByIdPSessionOfSubject(_ context.Context, sid, subject string) (int, error) {
	if sid == "" || subject == "" {
		return 0, nil
	}
	m.idxMu.Lock()
	ids := m.bySID[sid].ids()
	m.idxMu.Unlock()
	n := 0
	for _, id := range ids {
		sh := m.shard(id)
		sh.mu.Lock()
		if s, ok := sh.lru.Peek(id); ok && s.IdPSessionID == sid && s.Subject == subject {
			m.removeLocked(sh, s)
			n++
		}
		sh.mu.Unlock()
	}
	return n, nil
}

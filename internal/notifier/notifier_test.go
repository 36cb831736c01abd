package notifier

import (
	"context"
	"testing"
	"time"
)

func TestWaitReturnsOnNotify(t *testing.T) {
	n := New()
	gen := n.Generation("@a:x")
	done := make(chan bool)
	go func() { done <- n.Wait(context.Background(), "@a:x", gen) }()
	n.Notify(Room, "@b:x")
	select {
	case <-done:
		t.Fatal("woken by another user's notification")
	case <-time.After(20 * time.Millisecond):
	}
	n.Notify(Room, "@a:x")
	select {
	case woke := <-done:
		if !woke {
			t.Fatal("Wait reported no wake-up")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Notify")
	}
}

func TestNotifyBeforeWaitIsNotLost(t *testing.T) {
	n := New()
	gen := n.Generation("@a:x")
	n.Notify(Room, "@a:x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !n.Wait(ctx, "@a:x", gen) {
		t.Fatal("a notification between Generation and Wait was lost")
	}
}

func TestWaitHonoursContext(t *testing.T) {
	n := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n.Wait(ctx, "@a:x", n.Generation("@a:x")) {
		t.Fatal("Wait reported a wake-up on a cancelled context")
	}
}

func TestChangedSince(t *testing.T) {
	n := New()
	const u = "@a:x"
	gen := n.Generation(u)
	if got := n.ChangedSince(u, n.Epoch(), gen); got != 0 {
		t.Fatalf("nothing notified: %b", got)
	}
	n.Notify(Room|Membership, u)
	mid := n.Generation(u)
	n.Notify(ToDevice, u)
	n.Notify(AccountData, "@b:x")
	if got := n.ChangedSince(u, n.Epoch(), gen); got != Room|Membership|ToDevice {
		t.Errorf("since the start: %b", got)
	}
	if got := n.ChangedSince(u, n.Epoch(), mid); got != ToDevice {
		t.Errorf("since the first notification: %b", got)
	}
	if got := n.ChangedSince(u, n.Epoch()+1, mid); got != All {
		t.Errorf("another epoch: %b, want All", got)
	}
	if got := n.ChangedSince(u, n.Epoch(), mid+10); got != All {
		t.Errorf("a generation never handed out: %b, want All", got)
	}
	if got := n.ChangedSince("@nobody:x", n.Epoch(), 0); got != All {
		t.Errorf("an unknown user: %b, want All", got)
	}
}

func TestWaitRoom(t *testing.T) {
	n := New()
	n.NotifyRoom("!unwatched:x") // no one waits: nothing kept
	if len(n.rooms) != 0 {
		t.Fatalf("a room no one waits on is tracked: %d rooms", len(n.rooms))
	}
	gen := n.RoomGeneration("!r:x")
	done := make(chan bool)
	go func() { done <- n.WaitRoom(context.Background(), "!r:x", gen) }()
	n.NotifyRoom("!other:x")
	n.Notify(Room, "@a:x")
	select {
	case <-done:
		t.Fatal("woken by another room or a user's notification")
	case <-time.After(20 * time.Millisecond):
	}
	n.NotifyRoom("!r:x")
	select {
	case woke := <-done:
		if !woke {
			t.Fatal("WaitRoom reported no wake-up")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRoom did not return after NotifyRoom")
	}
	// A wake-up between RoomGeneration and WaitRoom is not lost.
	gen = n.RoomGeneration("!r:x")
	n.NotifyRoom("!r:x")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if !n.WaitRoom(ctx, "!r:x", gen) {
		t.Fatal("a room notification before WaitRoom was lost")
	}
}

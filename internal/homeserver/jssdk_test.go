package homeserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/myelin-chat/myelin/internal/mxtest"
)

// jssdkDir holds the matrix-js-sdk scripts, their package.json and
// package-lock.json; .ci/run installs their node_modules (npm ci).
var jssdkDir = filepath.Join("..", "..", "tests", "jssdk")

// jsAccount is a logged-in user as a js-sdk script receives it (see
// tests/jssdk/harness.mjs).
type jsAccount struct {
	URL         string      `json:"url"`
	ServerName  string      `json:"server_name"`
	UserID      id.UserID   `json:"user_id"`
	AccessToken string      `json:"access_token"`
	DeviceID    id.DeviceID `json:"device_id"`
}

func jsAccountOf(srv *mxtest.Server, cli *mautrix.Client) jsAccount {
	return jsAccount{URL: srv.URL, ServerName: srv.Config.ServerName, UserID: cli.UserID, AccessToken: cli.AccessToken, DeviceID: cli.DeviceID}
}

// runJSSDK runs the node script tests/jssdk/<script> with input as JSON on
// its stdin, and decodes the JSON of its "RESULT " line into out. The test
// is skipped when node is not installed; the npm dependencies are
// installed first if .ci/run has not done it.
func runJSSDK(t *testing.T, script string, input, out any) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the matrix-js-sdk tests need Node.js 20 or later (apt-get install nodejs npm; .ci/run does it)")
	}
	// The pinned sdk needs Node.js 20 (Debian 12 ships 18).
	if v, err := exec.Command(node, "-p", "process.versions.node").Output(); err != nil {
		t.Fatalf("node -p process.versions.node: %v", err)
	} else if major, _, _ := strings.Cut(strings.TrimSpace(string(v)), "."); atoi(major) < 20 {
		t.Skipf("node %s is too old: the matrix-js-sdk tests need Node.js 20 or later", strings.TrimSpace(string(v)))
	}
	ensureJSSDKDeps(t)
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = jssdkDir
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	_, result, found := strings.Cut(stdout.String(), "\nRESULT ")
	if err != nil || !found {
		t.Fatalf("node %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(result)), out); err != nil {
		t.Fatalf("node %s printed a bad result: %v\n%s", script, err, result)
	}
	if testing.Verbose() && stderr.Len() > 0 {
		t.Logf("node %s stderr:\n%s", script, stderr.String())
	}
}

// ensureJSSDKDeps runs npm ci in tests/jssdk when its node_modules is
// missing or holds another sdk version than package.json pins, holding a lock on the directory so that test processes running
// at once install it once.
func ensureJSSDKDeps(t *testing.T) {
	t.Helper()
	// Installed means the sdk in node_modules is the version package.json
	// pins (a stale install after a version change counts as missing).
	installed := func() bool {
		var want struct {
			Dependencies map[string]string `json:"dependencies"`
		}
		var got struct {
			Version string `json:"version"`
		}
		pkg, err := os.ReadFile(filepath.Join(jssdkDir, "package.json"))
		if err == nil {
			err = json.Unmarshal(pkg, &want)
		}
		if err != nil {
			t.Fatalf("reading %s/package.json: %v", jssdkDir, err)
		}
		sdk, err := os.ReadFile(filepath.Join(jssdkDir, "node_modules", "matrix-js-sdk", "package.json"))
		return err == nil && json.Unmarshal(sdk, &got) == nil && got.Version == want.Dependencies["matrix-js-sdk"]
	}
	if installed() {
		return
	}
	lock, err := os.OpenFile(filepath.Join(jssdkDir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if installed() {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("node is installed but npm is not, and %s/node_modules is missing: run .ci/run or npm ci there", jssdkDir)
	}
	cmd := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = jssdkDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", jssdkDir, err, out)
	}
}

// threadView is one js-sdk client's account of a thread
// (tests/jssdk/threads.mjs).
type threadView struct {
	Threads      []id.EventID `json:"threads"`
	Root         id.EventID   `json:"root"`
	RootBody     string       `json:"root_body"`
	Length       int          `json:"length"`
	Latest       id.EventID   `json:"latest"`
	Participated bool         `json:"participated"`
	AllThreads   []id.EventID `json:"all_threads"`
	MyThreads    []id.EventID `json:"my_threads"`
	Events       []id.EventID `json:"events"`
	Bundled      *struct {
		Count        int        `json:"count"`
		Latest       id.EventID `json:"latest"`
		Participated bool       `json:"participated"`
	} `json:"bundled"`
	List []struct {
		ID     id.EventID `json:"id"`
		Count  int        `json:"count"`
		Latest id.EventID `json:"latest"`
	} `json:"list"`
}

// TestJSSDKThreads: two matrix-js-sdk clients with thread support, one per
// server, start a thread over federation (tests/jssdk/threads.mjs), and
// both see the same thread: the same root, two replies, the second user's
// reply as the latest, in the sdk's Thread model, in the root's bundled
// m.thread aggregation and in /threads.
func TestJSSDKThreads(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		hs := mxtest.Federation(t, engine, 2)
		u1, u2 := hs[0].Client("jsone"), hs[1].Client("jstwo")
		var res struct {
			RoomID  id.RoomID    `json:"room_id"`
			Root    id.EventID   `json:"root"`
			Replies []id.EventID `json:"replies"`
			Views   []threadView `json:"views"`
		}
		runJSSDK(t, "threads.mjs", map[string]any{"accounts": []jsAccount{jsAccountOf(hs[0], u1), jsAccountOf(hs[1], u2)}}, &res)
		if len(res.Views) != 2 || len(res.Replies) != 2 {
			t.Fatalf("result = %+v", res)
		}
		for i, v := range res.Views {
			who := []string{"user 1", "user 2"}[i]
			if len(v.Threads) != 1 || v.Threads[0] != res.Root || v.Root != res.Root || v.RootBody != "thread root" {
				t.Errorf("%s's threads = %v, root %s %q; want only %s", who, v.Threads, v.Root, v.RootBody, res.Root)
			}
			if v.Length != 2 || v.Latest != res.Replies[1] || !v.Participated {
				t.Errorf("%s's thread: %d replies, latest %s, participated %v; want 2, %s, true", who, v.Length, v.Latest, v.Participated, res.Replies[1])
			}
			if !slices.Equal(v.AllThreads, []id.EventID{res.Root}) || !slices.Equal(v.MyThreads, []id.EventID{res.Root}) {
				t.Errorf("%s's thread lists: all %v, mine %v; want only %s in both", who, v.AllThreads, v.MyThreads, res.Root)
			}
			if v.Bundled == nil || v.Bundled.Count != 2 || v.Bundled.Latest != res.Replies[1] || !v.Bundled.Participated {
				t.Errorf("%s's bundled m.thread = %+v; want count 2, latest %s, participated", who, v.Bundled, res.Replies[1])
			}
			if len(v.List) != 1 || v.List[0].ID != res.Root || v.List[0].Count != 2 || v.List[0].Latest != res.Replies[1] {
				t.Errorf("%s's /threads = %+v; want the root with 2 replies, latest %s", who, v.List, res.Replies[1])
			}
		}
		if a, b := res.Views[0], res.Views[1]; !slices.Equal(a.Events, b.Events) {
			t.Errorf("the clients' thread timelines differ: %v vs %v", a.Events, b.Events)
		}
	})
}

// atoi is strconv.Atoi with 0 for anything else.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestJSSDKSlidingSync: matrix-js-sdk's SlidingSync, the client side of
// simplified sliding sync that Element Web uses, gets the most recent
// rooms first, sees a room move into its window on a new message, and
// fills a subscribed room's timeline.
func TestJSSDKSlidingSync(t *testing.T) {
	mxtest.Engines(t, func(t *testing.T, engine string) {
		ctx := context.Background()
		hs := mxtest.Start(t, engine)
		alice, bob := hs.Client("jsss"), hs.Client("jsssb")
		const n = 25
		rooms := make([]id.RoomID, n) // most recent first
		names := map[id.RoomID]string{}
		for i := range n {
			name := "room " + strconv.Itoa(i)
			created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: name})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bob.JoinRoom(ctx, created.RoomID.String(), nil); err != nil {
				t.Fatal(err)
			}
			for j := range 3 {
				if _, err := alice.SendText(ctx, created.RoomID, name+" message "+strconv.Itoa(j)); err != nil {
					t.Fatal(err)
				}
			}
			rooms[n-1-i], names[created.RoomID] = created.RoomID, name
		}
		var res struct {
			First     []id.RoomID          `json:"first"`
			Count     int                  `json:"count"`
			Names     map[id.RoomID]string `json:"names"`
			Oldest    id.RoomID            `json:"oldest"`
			AfterBump []struct {
				Rooms []id.RoomID `json:"rooms"`
			} `json:"after_bump"`
			Sub         id.RoomID `json:"sub"`
			SubTimeline []string  `json:"sub_timeline"`
			Errors      []any     `json:"errors"`
		}
		runJSSDK(t, "slidingsync.mjs", map[string]any{"accounts": []jsAccount{jsAccountOf(hs, alice), jsAccountOf(hs, bob)}, "rooms": rooms}, &res)
		if !slices.Equal(sortedRooms(res.First), sortedRooms(rooms[:10])) {
			t.Errorf("the first window: %v; want the 10 most recent rooms %v", res.First, rooms[:10])
		}
		if res.Count != n {
			t.Errorf("the list's count: %d, want %d", res.Count, n)
		}
		for _, r := range res.First {
			if res.Names[r] != names[r] {
				t.Errorf("room %s is named %q in the sdk, want %q", r, res.Names[r], names[r])
			}
		}
		var bumped bool
		for _, resp := range res.AfterBump {
			bumped = bumped || slices.Contains(resp.Rooms, res.Oldest)
		}
		if !bumped {
			t.Errorf("the oldest room did not come down after its new message: %+v", res.AfterBump)
		}
		subName := names[res.Sub]
		want := []string{subName + " message 0", subName + " message 1", subName + " message 2"}
		if !slices.Equal(res.SubTimeline, want) {
			t.Errorf("the subscribed room's timeline: %v, want %v", res.SubTimeline, want)
		}
		if len(res.Errors) != 0 {
			t.Errorf("sliding sync errors: %v", res.Errors)
		}
	})
}

func sortedRooms(rs []id.RoomID) []id.RoomID {
	out := slices.Clone(rs)
	slices.Sort(out)
	return out
}

package daemon_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// The repository explains itself: its code, help texts, examples and docs
// cite only documents it holds (docs/PROTOCOL.md, docs/ARCHITECTURE.md,
// README.md, config.hcl.example). These tests keep it so.

// repoRoot is the repository, seen from this package's directory.
const repoRoot = ".."

// absentDocs matches references to documents that live outside the
// repository, which its users never see. The patterns are assembled from
// pieces so that this file does not match them itself.
var absentDocs = []*regexp.Regexp{
	regexp.MustCompile(`\b` + "DESI" + `GN\b`), // the design document, by section or by name
	regexp.MustCompile("CONVEN" + "TIONS"),     // the style notes
	regexp.MustCompile(`\.\./` + "shared"),     // the directory both live in
}

func TestRepositoryCitesOnlyItsOwnDocs(t *testing.T) {
	files := repoFiles(t, repoRoot)
	if len(files) < 50 {
		t.Fatalf("found only %d files under %s: the walk is broken", len(files), repoRoot)
	}
	for _, p := range mentionsOfAbsentDocs(t, repoRoot, files) {
		t.Error(p)
	}
}

func TestMarkdownLinksResolve(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := []string{"README.md"}
	for _, d := range docs {
		rel, _ := filepath.Rel(repoRoot, d)
		md = append(md, rel)
	}
	if len(md) < 3 {
		t.Fatalf("markdown files: %v", md)
	}
	for _, p := range brokenLinks(t, repoRoot, md) {
		t.Error(p)
	}
}

// TestDocCheckersFindFaults holds the two checkers above to planted faults,
// so that a checker that finds nothing cannot pass for a clean repository.
func TestDocCheckersFindFaults(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/A.md", "# Title\n\n## Some section, with `code`\n\n```\n## not a heading\n```\n")
	write("main.go", "// See "+"DESI"+"GN §4.\npackage main\n")
	write("notes.txt", "as in "+"../"+"shared/x and "+"CONVEN"+"TIONS 13\n")
	write("blob.bin", "DESI"+"GN\x00binary")
	write("README.md", "[ok](docs/A.md) [ok](docs/A.md#some-section-with-code) [ok](#top)\n"+
		"[web](https://example.com/x.md) `[code](missing.md)`\n\n# Top\n"+
		"[gone](docs/B.md) [bad anchor](docs/A.md#not-a-heading) [self](#nowhere)\n")

	tests := []struct {
		name string
		got  []string
		want []string // substrings, one per problem, in order
	}{
		{"mentions", mentionsOfAbsentDocs(t, dir, []string{"README.md", "blob.bin", "docs/A.md", "main.go", "notes.txt"}),
			[]string{"main.go:1", "notes.txt:1", "notes.txt:1"}},
		{"links", brokenLinks(t, dir, []string{"README.md", "docs/A.md"}),
			[]string{"docs/B.md", "#not-a-heading", "#nowhere"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(tc.got), len(tc.want), strings.Join(tc.got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.Contains(tc.got[i], w) {
					t.Errorf("problem %d is %q, want it to mention %q", i, tc.got[i], w)
				}
			}
		})
	}
}

// repoFiles lists the repository's tracked files, relative to root, as
// git ls-files does; without git (a source tarball) it walks the tree,
// skipping .git.
func repoFiles(t *testing.T, root string) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output(); err == nil {
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" {
				files = append(files, filepath.FromSlash(f))
			}
		}
		return files
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// mentionsOfAbsentDocs returns "file:line: text" for every line of a text
// file that matches absentDocs. Binary files (a NUL byte in the first
// 8,000 bytes, git's test) and files deleted from the work tree are
// skipped.
func mentionsOfAbsentDocs(t *testing.T, root string, files []string) []string {
	t.Helper()
	var problems []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 {
			continue
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, re := range absentDocs {
				if m := re.FindString(line); m != "" {
					problems = append(problems, fmt.Sprintf("%s:%d: cites %q, which the repository does not hold (point to docs/PROTOCOL.md or docs/ARCHITECTURE.md): %s",
						f, i+1, m, strings.TrimSpace(line)))
				}
			}
		}
	}
	return problems
}

var (
	// inlineLink is [text](target) or [text](target "title").
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// refLink is a reference definition: [label]: target
	refLink = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*(\S+)`)
	// codeSpan is inline code, whose brackets are not links.
	codeSpan = regexp.MustCompile("`[^`]*`")
	// scheme marks an absolute URL, which is not checked here.
	scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// brokenLinks checks every relative link of the markdown files mdFiles
// (relative to root): its file must exist inside root, and a #fragment
// pointing into a markdown file must name one of its headings as GitHub
// renders their anchors.
func brokenLinks(t *testing.T, root string, mdFiles []string) []string {
	t.Helper()
	var problems []string
	anchors := map[string]map[string]bool{} // by path relative to root
	anchorsOf := func(rel string) map[string]bool {
		if a, ok := anchors[rel]; ok {
			return a
		}
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		anchors[rel] = headingAnchors(string(b))
		return anchors[rel]
	}
	for _, md := range mdFiles {
		b, err := os.ReadFile(filepath.Join(root, md))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range markdownLinks(string(b)) {
			if scheme.MatchString(l.target) {
				continue
			}
			path, frag, _ := strings.Cut(l.target, "#")
			rel := md
			if path != "" {
				if strings.HasPrefix(path, "/") {
					rel = filepath.Clean(filepath.FromSlash(strings.TrimPrefix(path, "/")))
				} else {
					rel = filepath.Join(filepath.Dir(md), filepath.FromSlash(path))
				}
			}
			where := fmt.Sprintf("%s:%d: link %q", md, l.line, l.target)
			if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				problems = append(problems, where+" leaves the repository")
				continue
			}
			fi, err := os.Stat(filepath.Join(root, rel))
			if err != nil {
				problems = append(problems, where+": no such file")
				continue
			}
			if frag != "" && !fi.IsDir() && strings.HasSuffix(rel, ".md") && !anchorsOf(rel)[frag] {
				problems = append(problems, fmt.Sprintf("%s: %s has no heading with anchor #%s", where, rel, frag))
			}
		}
	}
	return problems
}

type mdLink struct {
	target string
	line   int
}

// markdownLinks returns the links of a markdown text outside fenced code
// blocks and code spans.
func markdownLinks(text string) []mdLink {
	var links []mdLink
	fenced := false
	for i, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			links = append(links, mdLink{m[1], i + 1})
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			links = append(links, mdLink{m[1], i + 1})
		}
	}
	return links
}

// headingAnchors returns the anchors GitHub gives the ATX headings of a
// markdown text: the heading's text without markup, lower-cased, with
// everything but letters, digits, spaces, '-' and '_' removed and spaces
// turned into '-'; a repeated anchor gets "-1", "-2", ...
func headingAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		title, ok := strings.CutPrefix(line, "#")
		if fenced || !ok {
			continue
		}
		title = strings.TrimLeft(title, "#")
		if title != "" && title[0] != ' ' {
			continue // "#word" is not a heading
		}
		title = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(title), "#"))
		title = inlineLink.ReplaceAllStringFunc(title, func(s string) string { return s[1:strings.Index(s, "](")] })
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a]++
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		anchors[a] = true
	}
	return anchors
}

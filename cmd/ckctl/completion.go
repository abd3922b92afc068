package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

var completionCmd = &command{
	name:    "completion",
	args:    "bash|zsh|fish",
	summary: "print a shell completion script",
	detail: "Prints a completion script for the shell, made from ckctl's own tables of commands and\n" +
		"flags, so it is as current as the binary. Commands, flags, -o's formats, file names for\n" +
		"--socket, --file and import, and help's and completion's arguments are completed; keys\n" +
		"are not (that would ask the daemon at every tab).\n" +
		"  bash: source <(ckctl completion bash), or save it in /usr/share/bash-completion/completions/ckctl\n" +
		"  zsh:  ckctl completion zsh > \"${fpath[1]}/_ckctl\", or source <(ckctl completion zsh)\n" +
		"  fish: ckctl completion fish > ~/.config/fish/completions/ckctl.fish",
	minArgs: 1,
	maxArgs: 1,
	offline: true,
	setup: func(fs *flag.FlagSet) func(*env, []string) error {
		return func(e *env, args []string) error {
			gen, ok := completionGenerators[args[0]]
			if !ok {
				return usageErr(nil, "no completion for %q: want bash, zsh or fish", args[0])
			}
			return gen(e.stdout, completionTable(e))
		}
	},
}

var completionGenerators = map[string]func(io.Writer, []compCommand) error{
	"bash": writeBash,
	"zsh":  writeZsh,
	"fish": writeFish,
}

// What a flag's value or a command's arguments complete to.
const (
	compNothing = iota
	compFiles
	compWords
)

// compFlag is a flag as the completions know it.
type compFlag struct {
	name    string // as typed: "--file", "-o"
	usage   string
	value   bool // takes a value
	kind    int  // of the value
	words   []string
	argName string
}

// compCommand is a command as the completions know it; the first entry of
// the table, with name "", holds the globals.
type compCommand struct {
	name    string
	summary string
	flags   []compFlag
	args    int // what its arguments complete to
	words   []string
}

// flagValues says what the values of flags with these names complete to.
var flagValues = map[string]struct {
	kind  int
	words []string
}{
	"socket": {compFiles, nil},
	"file":   {compFiles, nil},
	"o":      {compWords, []string{"text", "json"}},
}

// completionTable is ckctl's commands and flags, read from the same
// tables and flag sets that parse the command line.
func completionTable(e *env) []compCommand {
	gfs := flag.NewFlagSet("", flag.ContinueOnError)
	(&globals{}).register(gfs)
	var all []*flag.Flag
	gfs.VisitAll(func(f *flag.Flag) { all = append(all, f) })
	table := []compCommand{{flags: compFlags(all)}}
	argWords := map[string][]string{"completion": {"bash", "fish", "zsh"}, "members": {"trust"}}
	for _, c := range commands {
		argWords["help"] = append(argWords["help"], c.name)
	}
	for _, c := range commands {
		fs, _ := e.newFlagSet(c)
		cc := compCommand{name: c.name, summary: c.summary, flags: compFlags(ownFlags(fs))}
		switch {
		case argWords[c.name] != nil:
			cc.args, cc.words = compWords, argWords[c.name]
		case c.name == "import":
			cc.args = compFiles
		}
		table = append(table, cc)
	}
	return table
}

// compFlags describes flags.
func compFlags(flags []*flag.Flag) []compFlag {
	var out []compFlag
	for _, f := range flags {
		arg, usage := flag.UnquoteUsage(f)
		cf := compFlag{name: dashed(f.Name), usage: usage, argName: arg}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			cf.value = true
			v := flagValues[f.Name]
			cf.kind, cf.words = v.kind, v.words
		}
		out = append(out, cf)
	}
	return out
}

// spellings are the ways Go's flag package takes a flag: "-x" or "--x".
func spellings(f compFlag) []string {
	bare := strings.TrimLeft(f.name, "-")
	return []string{"-" + bare, "--" + bare}
}

func flagNames(fl []compFlag) string {
	var names []string
	for _, f := range fl {
		names = append(names, f.name)
	}
	return strings.Join(names, " ")
}

func writeBash(w io.Writer, table []compCommand) error {
	globals := table[0].flags
	var b strings.Builder
	b.WriteString(`# bash completion for ckctl, made by 'ckctl completion bash' from ckctl's own
# tables of commands and flags. Load it with: source <(ckctl completion bash)
_ckctl() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="" cmd="" words="" i
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    # The command is the first word that is neither a flag nor a flag's value.
    for (( i = 1; i < COMP_CWORD; i++ )); do
        case "${COMP_WORDS[i]}" in
`)
	fmt.Fprintf(&b, "            %s) (( i++ )) ;;\n", bashAlternatives(valueFlags(globals)))
	b.WriteString(`            -*) ;;
            *) cmd="${COMP_WORDS[i]}"; break ;;
        esac
    done
`)
	fmt.Fprintf(&b, "    local globals=%q\n", flagNames(globals))
	b.WriteString("    case \"$cmd\" in\n")
	for _, c := range table {
		fmt.Fprintf(&b, "    %q)\n", c.name)
		flags := withGlobals(c, globals)
		writeBashFlagValues(&b, flags)
		fmt.Fprintf(&b, "        if [[ \"$cur\" == -* ]]; then words=\"%s\"\n", flagNames(flags))
		switch {
		case c.name == "":
			fmt.Fprintf(&b, "        else words=%q\n", commandNames(table))
		case c.args == compWords:
			fmt.Fprintf(&b, "        else words=%q\n", strings.Join(c.words, " "))
		case c.args == compFiles:
			b.WriteString("        else COMPREPLY=( $(compgen -f -- \"$cur\") ); return 0\n")
		}
		b.WriteString("        fi ;;\n")
	}
	b.WriteString(`    *) return 0 ;;
    esac
    COMPREPLY=( $(compgen -W "$words" -- "$cur") )
}
complete -F _ckctl ckctl
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeBashFlagValues completes the value of the flag just typed.
func writeBashFlagValues(b *strings.Builder, flags []compFlag) {
	var free []compFlag
	started := false
	for _, f := range flags {
		if !f.value {
			continue
		}
		if !started {
			b.WriteString("        case \"$prev\" in\n")
			started = true
		}
		switch f.kind {
		case compFiles:
			fmt.Fprintf(b, "            %s) COMPREPLY=( $(compgen -f -- \"$cur\") ); return 0 ;;\n", bashAlternatives([]compFlag{f}))
		case compWords:
			fmt.Fprintf(b, "            %s) COMPREPLY=( $(compgen -W %q -- \"$cur\") ); return 0 ;;\n", bashAlternatives([]compFlag{f}), strings.Join(f.words, " "))
		default:
			free = append(free, f)
		}
	}
	if len(free) > 0 {
		fmt.Fprintf(b, "            %s) COMPREPLY=(); return 0 ;;\n", bashAlternatives(free))
	}
	if started {
		b.WriteString("        esac\n")
	}
}

// withGlobals is c's flags and the globals it does not define itself (set
// and del define --timeout).
func withGlobals(c compCommand, globals []compFlag) []compFlag {
	flags := append([]compFlag(nil), c.flags...)
	if c.name == "" {
		return flags
	}
	for _, g := range globals {
		own := false
		for _, f := range c.flags {
			own = own || f.name == g.name
		}
		if !own {
			flags = append(flags, g)
		}
	}
	return flags
}

func valueFlags(fl []compFlag) []compFlag {
	var out []compFlag
	for _, f := range fl {
		if f.value {
			out = append(out, f)
		}
	}
	return out
}

// bashAlternatives is a case pattern matching every spelling of flags.
func bashAlternatives(fl []compFlag) string {
	var alts []string
	for _, f := range fl {
		alts = append(alts, spellings(f)...)
	}
	return strings.Join(alts, "|")
}

func commandNames(table []compCommand) string {
	var names []string
	for _, c := range table[1:] {
		names = append(names, c.name)
	}
	return strings.Join(names, " ")
}

func writeZsh(w io.Writer, table []compCommand) error {
	var b strings.Builder
	b.WriteString(`#compdef ckctl
# zsh completion for ckctl, made by 'ckctl completion zsh' from ckctl's own
# tables of commands and flags. Save it as _ckctl in a directory of $fpath,
# or load it with: source <(ckctl completion zsh)

_ckctl() {
  local curcontext="$curcontext" state line ret=1
  local -a globals commands
  globals=(
`)
	for _, f := range table[0].flags {
		fmt.Fprintf(&b, "    %s\n", zshFlagSpec(f))
	}
	b.WriteString("  )\n  commands=(\n")
	for _, c := range table[1:] {
		fmt.Fprintf(&b, "    %s\n", zshQuote(zshEscape(c.name)+":"+c.summary))
	}
	b.WriteString(`  )
  _arguments -C $globals '1: :->command' '*:: :->args' && ret=0
  case $state in
  command)
    _describe -t commands 'ckctl command' commands && ret=0 ;;
  args)
    case $words[1] in
`)
	for _, c := range table[1:] {
		fmt.Fprintf(&b, "    %s)\n      _arguments", c.name)
		for _, f := range withGlobals(c, table[0].flags) {
			fmt.Fprintf(&b, " \\\n        %s", zshFlagSpec(f))
		}
		switch c.args {
		case compWords:
			fmt.Fprintf(&b, " \\\n        %s", zshQuote("1:argument:("+strings.Join(c.words, " ")+")"))
		case compFiles:
			b.WriteString(" \\\n        '1:file:_files'")
		default:
			b.WriteString(" \\\n        '*:argument: '")
		}
		b.WriteString(" && ret=0 ;;\n")
	}
	b.WriteString(`    esac ;;
  esac
  return ret
}

if [ "$funcstack[1]" = "_ckctl" ]; then
  _ckctl "$@"
else
  compdef _ckctl ckctl
fi
`)
	_, err := io.WriteString(w, b.String())
	return err
}

// zshFlagSpec is an _arguments spec for f, quoted.
func zshFlagSpec(f compFlag) string {
	spec := f.name
	if f.value {
		spec += "="
	}
	spec += "[" + zshEscape(f.usage) + "]"
	if f.value {
		arg := zshEscape(f.argName)
		if arg == "" {
			arg = "value"
		}
		switch f.kind {
		case compFiles:
			spec += ":" + arg + ":_files"
		case compWords:
			spec += ":" + arg + ":(" + strings.Join(f.words, " ") + ")"
		default:
			spec += ":" + arg + ": "
		}
	}
	return zshQuote(spec)
}

// zshEscape escapes what _arguments and _describe give a meaning to.
func zshEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func writeFish(w io.Writer, table []compCommand) error {
	var b strings.Builder
	b.WriteString(`# fish completion for ckctl, made by 'ckctl completion fish' from ckctl's own
# tables of commands and flags. Save it as ~/.config/fish/completions/ckctl.fish
complete -c ckctl -f
`)
	for _, c := range table[1:] {
		fmt.Fprintf(&b, "complete -c ckctl -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	for _, f := range table[0].flags {
		fmt.Fprintf(&b, "complete -c ckctl -n __fish_use_subcommand %s\n", fishFlag(f))
	}
	for _, c := range table[1:] {
		cond := fishQuote("__fish_seen_subcommand_from " + c.name)
		for _, f := range withGlobals(c, table[0].flags) {
			fmt.Fprintf(&b, "complete -c ckctl -n %s %s\n", cond, fishFlag(f))
		}
		switch c.args {
		case compWords:
			fmt.Fprintf(&b, "complete -c ckctl -n %s -a %s\n", cond, fishQuote(strings.Join(c.words, " ")))
		case compFiles:
			fmt.Fprintf(&b, "complete -c ckctl -n %s -F\n", cond)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fishFlag is the options of a complete line for f.
func fishFlag(f compFlag) string {
	bare := strings.TrimLeft(f.name, "-")
	opt := "-l " + bare
	if len(bare) == 1 {
		opt = "-s " + bare
	}
	if f.value {
		switch f.kind {
		case compFiles:
			opt += " -r -F"
		case compWords:
			opt += " -x -a " + fishQuote(strings.Join(f.words, " "))
		default:
			opt += " -x"
		}
	}
	return opt + " -d " + fishQuote(f.usage)
}

// fishQuote single-quotes s for fish.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}
